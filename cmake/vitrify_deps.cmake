# Locate the system libraries vitrify builds on (installed by scripts/setup.sh from Debian packages).
find_package(zstd CONFIG QUIET)
if(TARGET zstd::libzstd_shared)
  set(VITRIFY_ZSTD_TARGET zstd::libzstd_shared)
elseif(TARGET zstd::libzstd_static)
  set(VITRIFY_ZSTD_TARGET zstd::libzstd_static)
else()
  find_package(PkgConfig REQUIRED)
  pkg_check_modules(VITRIFY_PC_ZSTD REQUIRED IMPORTED_TARGET libzstd)
  set(VITRIFY_ZSTD_TARGET PkgConfig::VITRIFY_PC_ZSTD)
endif()

find_path(VITRIFY_XXHASH_INCLUDE xxhash.h REQUIRED)
find_library(VITRIFY_XXHASH_LIB xxhash REQUIRED)
if(NOT TARGET vitrify_xxhash)
  add_library(vitrify_xxhash INTERFACE IMPORTED)
  set_target_properties(vitrify_xxhash PROPERTIES
    INTERFACE_INCLUDE_DIRECTORIES "${VITRIFY_XXHASH_INCLUDE}"
    INTERFACE_LINK_LIBRARIES "${VITRIFY_XXHASH_LIB}")
endif()

find_package(simdjson CONFIG REQUIRED)
find_package(OpenSSL REQUIRED COMPONENTS Crypto)

# Legacy readers (src/legacy): zip archives (minizip), tar archives (libarchive) and joblib's
# whole-file codecs (zlib, bz2, xz/lzma, lz4). Linked PRIVATE; found here for consumers of the
# static library as well.
find_package(PkgConfig REQUIRED)
if(NOT TARGET PkgConfig::VITRIFY_PC_LEGACY)
  pkg_check_modules(VITRIFY_PC_LEGACY REQUIRED IMPORTED_TARGET minizip libarchive liblz4 liblzma zlib)
endif()
find_package(BZip2 REQUIRED)
