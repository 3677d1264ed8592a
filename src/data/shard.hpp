// Token shards on disk: the llm.c format (256 x int32 header, then uint16 tokens) and
// nanoGPT's raw uint16 `.bin`, read through a validated read-only memory map.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "core/types.hpp"

namespace flowlm::data {

/// llm.c shard header: 256 int32; [0] magic, [1] version, [2] token count.
constexpr std::int32_t kShardMagic = 20240520;
constexpr std::int32_t kShardVersion = 1;
constexpr index_t kShardHeaderInts = 256;
constexpr index_t kShardHeaderBytes = kShardHeaderInts * 4;

/// \brief On-disk token layout. `Auto` reads llm.c when the first int32 is the magic and raw
/// uint16 otherwise (a raw file whose first two tokens happen to spell the magic, i.e. tokens
/// 55208 then 308, would be misread; real vocabularies make that practically impossible).
enum class ShardFormat { Auto, LlmC, Raw };

/// \brief "llm.c" / "raw uint16" / "auto".
const char* shard_format_name(ShardFormat f);

/// \brief Writes `tokens` as an llm.c shard (or raw uint16 for ShardFormat::Raw) atomically:
/// to `<path>.tmp`, then renamed. Throws IoError naming the file. Assumes a little-endian host
/// (as llm.c does).
void write_shard(const std::filesystem::path& path, const std::vector<std::uint16_t>& tokens,
                 ShardFormat format = ShardFormat::LlmC);

/// \brief A read-only memory map of a whole file (RAII, move-only). Empty files map nothing.
class MappedFile {
 public:
  MappedFile() = default;
  /// Throws IoError naming the file when it cannot be opened or mapped.
  explicit MappedFile(const std::filesystem::path& path);
  ~MappedFile();
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const unsigned char* data() const { return static_cast<const unsigned char*>(addr_); }
  std::size_t size() const { return size_; }

 private:
  void reset() noexcept;
  void* addr_ = nullptr;
  std::size_t size_ = 0;
};

/// \brief One opened and validated token shard.
class TokenShard {
 public:
  /// \brief Maps `path` and validates it: header length, magic, version, file size against the
  /// token count (IoError), and every token < vocab_size (DataError with the first bad token's
  /// index and value). vocab_size must be in [1, 65536] (ConfigError otherwise).
  TokenShard(std::filesystem::path path, index_t vocab_size, ShardFormat format = ShardFormat::Auto);

  const std::filesystem::path& path() const { return path_; }
  /// The detected format (never Auto).
  ShardFormat format() const { return format_; }
  index_t size() const { return n_tokens_; }
  const std::uint16_t* tokens() const { return tokens_; }
  std::uint16_t operator[](index_t i) const { return tokens_[i]; }
  std::vector<std::uint16_t> to_vector() const { return {tokens_, tokens_ + n_tokens_}; }

 private:
  std::filesystem::path path_;
  MappedFile map_;
  ShardFormat format_ = ShardFormat::Auto;
  const std::uint16_t* tokens_ = nullptr;
  index_t n_tokens_ = 0;
};

/// \brief Expands paths and glob(3) patterns into a sorted, de-duplicated list of files.
/// Relative patterns are taken relative to `base` when it is not empty. A pattern that
/// matches nothing (or a plain path that does not exist) is an IoError naming it.
std::vector<std::filesystem::path> expand_paths(const std::vector<std::string>& patterns,
                                                const std::filesystem::path& base = {});

}  // namespace flowlm::data
