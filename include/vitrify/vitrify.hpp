// vitrify/vitrify.hpp - the whole public API.
#pragma once

#include "vitrify/dtype.hpp"
#include "vitrify/error.hpp"
#include "vitrify/reader.hpp"
#include "vitrify/sign.hpp"
#include "vitrify/value.hpp"
#include "vitrify/version.hpp"
#include "vitrify/writer.hpp"
