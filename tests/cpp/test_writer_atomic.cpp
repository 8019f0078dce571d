// test_writer_atomic.cpp - file writers are atomic: the target is replaced only at commit, an
// abandoned writer leaves no trace, and unsuitable targets fail cleanly.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <string>
#include <vector>

#include "test_support.hpp"

using namespace vitrify;
using vt::bytes;

namespace {

writer_options opts(bool durable = false) {
  writer_options o;
  o.durable = durable;
  return o;
}

void add_some(writer& w, std::string_view name, std::uint64_t seed) {
  const std::uint64_t shape[] = {1000};
  ASSERT_OK(w.add_array(name, dtype::uint8, shape, vt::pattern_bytes(1000, seed)));
}

}  // namespace

TEST(AtomicWrite, ReplacesExistingFileOnlyAtCommit) {
  for (bool durable : {false, true}) {
    SCOPED_TRACE(durable ? "durable" : "not durable");
    vt::temp_dir dir;
    auto path = dir / "model.vit";
    vt::write_simple_file(path, "old", vt::pattern_bytes(10, 1));
    const auto old_bytes = vt::read_bytes(path);
    auto old_open = file::open(path);  // a reader mapping the old file keeps seeing it
    ASSERT_OK(old_open);
    {
      auto w = writer::create(path, opts(durable));
      ASSERT_OK(w);
      add_some(*w, "new", 2);
      EXPECT_TRUE(vt::read_bytes(path) == old_bytes) << "target changed before commit";
      ASSERT_OK(w->commit());
    }
    auto f = file::open(path);
    ASSERT_OK(f);
    ASSERT_EQ(f->arrays().size(), 1u);
    EXPECT_EQ(f->arrays()[0].name, "new");
    EXPECT_OK(f->verify());
    EXPECT_EQ(dir.entries(), std::vector<std::string>{"model.vit"}) << "temporary files left behind";
    EXPECT_EQ(old_open->arrays()[0].name, "old");
    EXPECT_OK(old_open->verify());
  }
}

TEST(AtomicWrite, AbandonedWriterLeavesOldFileAndNoTempFiles) {
  vt::temp_dir dir;
  auto path = dir / "model.vit";
  vt::write_simple_file(path, "old", vt::pattern_bytes(10, 1));
  const auto old_bytes = vt::read_bytes(path);
  {
    auto w = writer::create(path, opts());
    ASSERT_OK(w);
    add_some(*w, "new", 2);
    add_some(*w, "new2", 3);
    // destroyed without commit
  }
  EXPECT_TRUE(vt::read_bytes(path) == old_bytes);
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"model.vit"});
  {
    auto w = writer::create(dir / "fresh.vit", opts());
    ASSERT_OK(w);
    add_some(*w, "x", 1);
  }
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"model.vit"}) << "abandoned new file must not appear";
}

TEST(AtomicWrite, MovedFromWriterDoesNotDoubleClean) {
  vt::temp_dir dir;
  auto path = dir / "m.vit";
  auto w = writer::create(path, opts());
  ASSERT_OK(w);
  writer moved = std::move(w).value();
  add_some(moved, "a", 1);
  writer again = std::move(moved);
  ASSERT_OK(again.commit());
  auto f = file::open(path);
  ASSERT_OK(f);
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"m.vit"});
}

TEST(AtomicWrite, FailedCommitLeavesOldFile) {
  vt::temp_dir dir;
  auto path = dir / "model.vit";
  vt::write_simple_file(path, "old", vt::pattern_bytes(10, 1));
  const auto old_bytes = vt::read_bytes(path);
  {
    auto w = writer::create(path, opts());
    ASSERT_OK(w);
    add_some(*w, "new", 2);
    w->set_metadata(value::array_ref("ghost"));
    auto c = w->commit();
    EXPECT_FALSE(c.ok());
  }
  EXPECT_TRUE(vt::read_bytes(path) == old_bytes);
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"model.vit"});
}

TEST(AtomicWrite, SymlinkTargetFails) {
  vt::temp_dir dir;
  auto real = dir / "real.vit";
  vt::write_simple_file(real, "old", vt::pattern_bytes(10, 1));
  const auto old_bytes = vt::read_bytes(real);
  auto link = dir / "link.vit";
  std::filesystem::create_symlink(real, link);
  auto w = writer::create(link, opts());
  EXPECT_FALSE(w.ok());
  if (!w.ok()) {
    EXPECT_TRUE(w.code() == errc::io_error || w.code() == errc::invalid_argument) << w.err().what();
  } else {
    add_some(*w, "new", 2);
    (void)w->commit();
  }
  EXPECT_TRUE(std::filesystem::is_symlink(link));
  EXPECT_TRUE(vt::read_bytes(real) == old_bytes);
  // A dangling symlink is refused too.
  auto dangling = dir / "dangling.vit";
  std::filesystem::create_symlink(dir / "nowhere.vit", dangling);
  auto w2 = writer::create(dangling, opts());
  EXPECT_FALSE(w2.ok());
  EXPECT_FALSE(std::filesystem::exists(dir / "nowhere.vit"));
}

TEST(AtomicWrite, DirectoryTargetFails) {
  vt::temp_dir dir;
  auto sub = dir / "sub";
  std::filesystem::create_directory(sub);
  auto w = writer::create(sub, opts());
  EXPECT_FALSE(w.ok());
  if (!w.ok()) {
    EXPECT_TRUE(w.code() == errc::io_error || w.code() == errc::invalid_argument) << w.err().what();
  }
  EXPECT_TRUE(std::filesystem::is_directory(sub));
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"sub"});
  EXPECT_FALSE(writer::create(dir.path() / "", opts()).ok()) << "a path naming a folder";
}

TEST(AtomicWrite, MissingParentFolderFails) {
  vt::temp_dir dir;
  EXPECT_CODE(writer::create(dir / "no/such/dir/m.vit", opts()), errc::io_error);
}

TEST(AtomicWrite, ReadOnlyFolderFailsCleanly) {
  // As root, permission bits do not stop writes; /proc refuses file creation even to root.
  {
    auto w = writer::create("/proc/vitrify-test-unwritable.vit", opts());
    if (w.ok()) {
      add_some(*w, "a", 1);
      auto c = w->commit();
      EXPECT_FALSE(c.ok());
      if (!c.ok()) {
        EXPECT_EQ(c.code(), errc::io_error) << c.err().what();
      }
    } else {
      EXPECT_EQ(w.code(), errc::io_error) << w.err().what();
    }
  }
  if (::geteuid() == 0) GTEST_SKIP() << "running as root: a chmod 0555 folder is still writable";
  vt::temp_dir dir;
  auto ro = dir / "ro";
  std::filesystem::create_directory(ro);
  vt::write_simple_file(ro / "m.vit", "old", vt::pattern_bytes(10, 1));
  const auto old_bytes = vt::read_bytes(ro / "m.vit");
  ::chmod(ro.c_str(), 0555);
  auto w = writer::create(ro / "m.vit", opts());
  if (w.ok()) {
    add_some(*w, "a", 1);
    EXPECT_CODE(w->commit(), errc::io_error);
  } else {
    EXPECT_EQ(w.code(), errc::io_error) << w.err().what();
  }
  ::chmod(ro.c_str(), 0755);
  EXPECT_TRUE(vt::read_bytes(ro / "m.vit") == old_bytes);
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(ro)) names.push_back(e.path().filename().string());
  EXPECT_EQ(names, std::vector<std::string>{"m.vit"});
}

TEST(AtomicWrite, FileAndMemoryImagesAgree) {
  vt::temp_dir dir;
  auto path = dir / "m.vit";
  auto wf = writer::create(path, opts(true));
  ASSERT_OK(wf);
  add_some(*wf, "a", 4);
  ASSERT_OK(wf->commit());
  auto wm = writer::create_in_memory(opts());
  ASSERT_OK(wm);
  add_some(*wm, "a", 4);
  ASSERT_OK(wm->commit());
  EXPECT_TRUE(wm->take_bytes() == vt::read_bytes(path));
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode));
  EXPECT_NE(st.st_mode & S_IRUSR, 0u) << "committed file must be readable by its owner";
}
