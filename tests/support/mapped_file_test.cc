// Tests for MappedFile, ReadFileToString and WriteFileAtomically.
#include "support/mapped_file.h"
#include "tests/testing/temp_dir.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <string>

namespace moegraph {
namespace {

class MappedFileTest : public testing::TempDirTest {};

TEST_F(MappedFileTest, MapsContentsAndSurvivesMoves) {
  const std::string path = TestDir() + "/data.bin";
  const std::string contents("hello\0world", 11);
  ASSERT_TRUE(WriteFileAtomically(path, contents).ok());

  StatusOr<MappedFile> file = MappedFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  EXPECT_EQ(file->size(), contents.size());
  EXPECT_EQ(file->path(), path);
  EXPECT_EQ(std::memcmp(file->data(), contents.data(), contents.size()), 0);

  const std::byte* data = file->data();
  MappedFile moved = std::move(file).value();
  EXPECT_EQ(moved.data(), data);  // the mapping does not move
  MappedFile assigned = std::move(moved);
  EXPECT_EQ(assigned.data(), data);
  EXPECT_EQ(moved.data(), nullptr);  // NOLINT: checking the moved-from state
  EXPECT_EQ(std::memcmp(assigned.data(), contents.data(), contents.size()), 0);
}

TEST_F(MappedFileTest, EmptyFileHasNoMapping) {
  const std::string path = TestDir() + "/empty";
  ASSERT_TRUE(WriteFileAtomically(path, "").ok());
  StatusOr<MappedFile> file = MappedFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  EXPECT_EQ(file->size(), 0u);
  EXPECT_EQ(file->data(), nullptr);
}

TEST_F(MappedFileTest, MissingFileIsNotFoundAndDirectoryIsRejected) {
  const std::string dir = TestDir();
  StatusOr<MappedFile> missing = MappedFile::Open(dir + "/nope");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find(dir + "/nope"), std::string::npos);

  StatusOr<MappedFile> directory = MappedFile::Open(dir);
  ASSERT_FALSE(directory.ok());
  EXPECT_EQ(directory.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(directory.status().message(), dir + ": not a regular file");
}

TEST_F(MappedFileTest, ReadFileToString) {
  const std::string path = TestDir() + "/text";
  std::string big(200000, 'x');
  big[123456] = '\0';
  ASSERT_TRUE(WriteFileAtomically(path, big).ok());
  StatusOr<std::string> read = ReadFileToString(path);
  ASSERT_TRUE(read.ok());
  EXPECT_EQ(*read, big);
  EXPECT_EQ(ReadFileToString(path + ".missing").status().code(), StatusCode::kNotFound);
}

TEST_F(MappedFileTest, WriteFileAtomicallyReplacesAndLeavesNoTemporary) {
  const std::string path = TestDir() + "/file";
  ASSERT_TRUE(WriteFileAtomically(path, "first version").ok());
  ASSERT_TRUE(WriteFileAtomically(path, "second").ok());
  EXPECT_EQ(*ReadFileToString(path), "second");
  EXPECT_NE(::access((path + ".tmp").c_str(), F_OK), 0);
}

TEST_F(MappedFileTest, FailedWriteLeavesTheOldFile) {
  const std::string dir = TestDir();
  // The target is a non-empty directory, so the final rename fails after the write succeeded.
  const std::string target = dir + "/occupied";
  ASSERT_EQ(::mkdir(target.c_str(), 0755), 0);
  ASSERT_TRUE(WriteFileAtomically(target + "/keep", "precious").ok());
  Status status = WriteFileAtomically(target, "new");
  EXPECT_FALSE(status.ok());
  EXPECT_NE(::access((target + ".tmp").c_str(), F_OK), 0);  // temporary removed
  EXPECT_EQ(*ReadFileToString(target + "/keep"), "precious");

  // A missing directory fails before anything is written.
  Status missing_dir = WriteFileAtomically(dir + "/no/such/dir/file", "x");
  EXPECT_EQ(missing_dir.code(), StatusCode::kNotFound);
  EXPECT_NE(missing_dir.message().find(dir + "/no/such/dir/file.tmp"), std::string::npos);
}

}  // namespace
}  // namespace moegraph
