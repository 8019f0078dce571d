#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>

#include "format/internal.hpp"

namespace vitrify::detail {
namespace {

class mmap_storage final : public storage {
 public:
  mmap_storage(void* p, std::uint64_t n) {
    data_ = static_cast<const std::byte*>(p);
    size_ = n;
  }
  ~mmap_storage() override {
    if (data_ != nullptr && size_ != 0) ::munmap(const_cast<std::byte*>(data_), size_);
  }
};

class heap_storage final : public storage {
 public:
  heap_storage(const std::byte* p, std::size_t n) {
    // 4096 alignment so that every array keeps the alignment it has in a file.
    std::size_t cap = n == 0 ? 4096 : ((n + 4095) / 4096) * 4096;
    buf_ = static_cast<std::byte*>(::operator new(cap, std::align_val_t{4096}));
    if (n != 0) std::memcpy(buf_, p, n);
    data_ = buf_;
    size_ = n;
  }
  ~heap_storage() override { ::operator delete(buf_, std::align_val_t{4096}); }

 private:
  std::byte* buf_ = nullptr;
};

std::string errno_text(int e) { return std::strerror(e); }

}  // namespace

result<std::shared_ptr<storage>> map_file(const std::string& path, bool copy_on_write) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    return error{errc::io_error, path + ": cannot open: " + errno_text(e), e};
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int e = errno;
    ::close(fd);
    return error{errc::io_error, path + ": cannot stat: " + errno_text(e), e};
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return fail(errc::io_error, path + ": not a regular file");
  }
  auto size = static_cast<std::uint64_t>(st.st_size);
  if (size == 0) {
    ::close(fd);
    return fail(errc::truncated, path + ": file is empty (a vitrify file has at least a 64-byte preamble)");
  }
  int prot = PROT_READ | (copy_on_write ? PROT_WRITE : 0);
  void* p = ::mmap(nullptr, size, prot, MAP_PRIVATE, fd, 0);
  int e = errno;
  ::close(fd);
  if (p == MAP_FAILED) return error{errc::io_error, path + ": cannot map: " + errno_text(e), e};
  return std::shared_ptr<storage>(std::make_shared<mmap_storage>(p, size));
}

std::shared_ptr<storage> copy_to_storage(const std::byte* p, std::size_t n) {
  return std::make_shared<heap_storage>(p, n);
}

}  // namespace vitrify::detail
