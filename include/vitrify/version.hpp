// vitrify/version.hpp - library version.
#pragma once

#define VITRIFY_VERSION_MAJOR 0
#define VITRIFY_VERSION_MINOR 1
#define VITRIFY_VERSION_PATCH 0

namespace vitrify {
/// Library version string, e.g. "0.1.0".
const char* library_version() noexcept;
}  // namespace vitrify
