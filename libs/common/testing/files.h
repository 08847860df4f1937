#pragma once

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace crm::testing {

// The names of the files under `dir` (RocksDB table files, WAL, manifest)
// whose bytes contain `bytes`: what a person holding the directory, or a
// copy of it, could read.
inline std::vector<std::string> FilesHolding(const std::string& dir, const std::string& bytes) {
  std::vector<std::string> holding;
  std::error_code ec;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir, ec)) {
    if (!entry.is_regular_file()) continue;
    std::ifstream in(entry.path(), std::ios::binary);
    const std::string content((std::istreambuf_iterator<char>(in)),
                              std::istreambuf_iterator<char>());
    if (content.find(bytes) != std::string::npos) holding.push_back(entry.path().string());
  }
  return holding;
}

}  // namespace crm::testing
