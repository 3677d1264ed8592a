#include "data/shard.hpp"

#include <fcntl.h>
#include <glob.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <system_error>
#include <utility>

#include "core/error.hpp"

namespace flowlm::data {
namespace fs = std::filesystem;

const char* shard_format_name(ShardFormat f) {
  switch (f) {
    case ShardFormat::LlmC:
      return "llm.c";
    case ShardFormat::Raw:
      return "raw uint16";
    case ShardFormat::Auto:
      break;
  }
  return "auto";
}

void write_shard(const fs::path& path, const std::vector<std::uint16_t>& tokens, ShardFormat format) {
  fs::path tmp = path;
  tmp += ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) fail<IoError>("{}: cannot create shard file ({})", tmp.string(), std::strerror(errno));
    if (format != ShardFormat::Raw) {
      if (tokens.size() > static_cast<std::size_t>(INT32_MAX))
        fail<IoError>("{}: {} tokens do not fit an llm.c shard (at most {}); write smaller shards",
                      path.string(), tokens.size(), INT32_MAX);
      std::array<std::int32_t, kShardHeaderInts> header{};
      header[0] = kShardMagic;
      header[1] = kShardVersion;
      header[2] = static_cast<std::int32_t>(tokens.size());
      out.write(reinterpret_cast<const char*>(header.data()), kShardHeaderBytes);
    }
    out.write(reinterpret_cast<const char*>(tokens.data()),
              static_cast<std::streamsize>(tokens.size() * sizeof(std::uint16_t)));
    out.flush();
    if (!out) fail<IoError>("{}: write failed (disk full?)", tmp.string());
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) fail<IoError>("{}: cannot rename {} into place: {}", path.string(), tmp.string(), ec.message());
}

// ---- MappedFile -----------------------------------------------------------------------

MappedFile::MappedFile(const fs::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail<IoError>("{}: cannot open ({})", path.string(), std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    fail<IoError>("{}: cannot stat ({})", path.string(), std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    fail<IoError>("{}: not a regular file", path.string());
  }
  size_ = static_cast<std::size_t>(st.st_size);
  if (size_ > 0) {
    void* addr = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (addr == MAP_FAILED) {
      const int err = errno;
      ::close(fd);
      fail<IoError>("{}: cannot mmap {} bytes ({})", path.string(), size_, std::strerror(err));
    }
    addr_ = addr;
  }
  ::close(fd);  // the mapping keeps the file alive
}

MappedFile::~MappedFile() { reset(); }

MappedFile::MappedFile(MappedFile&& other) noexcept
    : addr_(std::exchange(other.addr_, nullptr)), size_(std::exchange(other.size_, 0)) {}

MappedFile& MappedFile::operator=(MappedFile&& other) noexcept {
  if (this != &other) {
    reset();
    addr_ = std::exchange(other.addr_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

void MappedFile::reset() noexcept {
  if (addr_ != nullptr) ::munmap(addr_, size_);
  addr_ = nullptr;
  size_ = 0;
}

// ---- TokenShard -----------------------------------------------------------------------

TokenShard::TokenShard(fs::path path, index_t vocab_size, ShardFormat format) : path_(std::move(path)) {
  if (vocab_size < 1 || vocab_size > 65536)
    fail<ConfigError>("{}: vocab_size = {} is out of range for uint16 token shards (1..65536)",
                      path_.string(), vocab_size);
  map_ = MappedFile(path_);
  const std::size_t bytes = map_.size();
  const std::string name = path_.string();

  std::array<std::int32_t, 3> head{};
  if (bytes >= sizeof head) std::memcpy(head.data(), map_.data(), sizeof head);
  // A header with the right version and a matching size but another magic is a corrupt llm.c
  // shard, not raw tokens: say so instead of reporting a confusing token value.
  const bool looks_llmc = bytes >= static_cast<std::size_t>(kShardHeaderBytes) && head[1] == kShardVersion &&
                          head[2] >= 0 &&
                          bytes == static_cast<std::size_t>(kShardHeaderBytes + 2 * index_t{head[2]});
  if (format == ShardFormat::Auto) {
    if (bytes >= 4 && head[0] == kShardMagic) {
      format = ShardFormat::LlmC;
    } else if (looks_llmc) {
      fail<IoError>("{}: bad magic {} in an llm.c-style header (expected {}); the file is corrupt or foreign",
                    name, head[0], kShardMagic);
    } else {
      format = ShardFormat::Raw;
    }
  }
  format_ = format;

  index_t offset = 0;
  if (format == ShardFormat::LlmC) {
    if (bytes < 4 || head[0] != kShardMagic)
      fail<IoError>("{}: bad magic {} (expected {} for an llm.c token shard)", name, head[0], kShardMagic);
    if (bytes < static_cast<std::size_t>(kShardHeaderBytes))
      fail<IoError>("{}: truncated llm.c header ({} bytes, need {}); the file is incomplete", name, bytes,
                    kShardHeaderBytes);
    if (head[1] != kShardVersion)
      fail<IoError>("{}: unsupported llm.c shard version {} (expected {})", name, head[1], kShardVersion);
    if (head[2] < 0) fail<IoError>("{}: negative token count {} in the header", name, head[2]);
    const index_t expect = kShardHeaderBytes + 2 * index_t{head[2]};
    if (static_cast<index_t>(bytes) != expect)
      fail<IoError>("{}: size {} bytes does not match the header's {} tokens ({} bytes expected); truncated?",
                    name, bytes, head[2], expect);
    offset = kShardHeaderBytes;
    n_tokens_ = head[2];
  } else {
    if (bytes % 2 != 0)
      fail<IoError>("{}: raw uint16 token file has an odd size ({} bytes); truncated?", name, bytes);
    n_tokens_ = static_cast<index_t>(bytes / 2);
  }
  // The mapping is page-aligned and the header is 1024 bytes, so tokens are 2-byte aligned.
  tokens_ = n_tokens_ > 0 ? reinterpret_cast<const std::uint16_t*>(map_.data() + offset) : nullptr;

  for (index_t i = 0; i < n_tokens_; ++i) {
    if (tokens_[i] >= vocab_size)
      fail<DataError>(
          "{}: token {} at index {} is out of range for vocab_size {} ({} file); wrong vocab_size "
          "or tokenizer?",
          name, tokens_[i], i, vocab_size, shard_format_name(format_));
  }
}

// ---- expand_paths ---------------------------------------------------------------------

namespace {

/// RAII for glob_t.
struct GlobResult {
  glob_t g{};
  ~GlobResult() { globfree(&g); }
};

bool has_magic(const std::string& s) { return s.find_first_of("*?[") != std::string::npos; }

}  // namespace

std::vector<fs::path> expand_paths(const std::vector<std::string>& patterns, const fs::path& base) {
  std::vector<fs::path> out;
  for (const auto& pat : patterns) {
    if (pat.empty()) fail<IoError>("an empty path was given in a list of data files");
    fs::path p(pat);
    if (p.is_relative() && !base.empty()) p = base / p;
    const std::string full = p.string();
    if (!has_magic(full)) {
      std::error_code ec;
      if (!fs::is_regular_file(p, ec)) fail<IoError>("{}: no such file", full);
      out.push_back(p);
      continue;
    }
    GlobResult r;
    const int rc = ::glob(full.c_str(), GLOB_ERR, nullptr, &r.g);
    if (rc == GLOB_NOMATCH || (rc == 0 && r.g.gl_pathc == 0))
      fail<IoError>("{}: pattern matches no files", full);
    if (rc != 0) fail<IoError>("{}: cannot expand pattern (glob error {})", full, rc);
    const std::size_t before = out.size();
    for (std::size_t i = 0; i < r.g.gl_pathc; ++i) {
      fs::path f(r.g.gl_pathv[i]);
      std::error_code ec;
      if (fs::is_regular_file(f, ec)) out.push_back(f);
    }
    if (out.size() == before) fail<IoError>("{}: pattern matches no regular files", full);
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

}  // namespace flowlm::data
