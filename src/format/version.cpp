#include "vitrify/version.hpp"

#define VITRIFY_STR2(x) #x
#define VITRIFY_STR(x) VITRIFY_STR2(x)

namespace vitrify {
const char* library_version() noexcept {
  return VITRIFY_STR(VITRIFY_VERSION_MAJOR) "." VITRIFY_STR(VITRIFY_VERSION_MINOR) "." VITRIFY_STR(
      VITRIFY_VERSION_PATCH);
}
}  // namespace vitrify
