// A test fixture whose every test works in its own directory under the gtest
// temp dir (named after the process and the test), removed when the test ends.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>

namespace moegraph::testing {

class TempDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = ::testing::TempDir() + "moegraph_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->test_suite_name() + "_" +
            std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::filesystem::remove_all(root_);
    std::filesystem::create_directories(root_);
  }
  void TearDown() override {
    std::error_code error;
    std::filesystem::remove_all(root_, error);
  }

  // A fresh subdirectory of this test's directory.
  std::string TestDir(const std::string& name = "d") {
    const std::string dir = root_ + "/" + name;
    std::filesystem::create_directories(dir);
    return dir;
  }

  std::string root_;
};

}  // namespace moegraph::testing
