// libFuzzer entry point of fuzz_pickle (body in fuzz_bodies.hpp, shared with the corpus replay test).
#include "fuzz_bodies.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return vitrify_fuzz::fuzz_pickle(data, size);
}
