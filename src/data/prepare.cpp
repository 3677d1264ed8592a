#include "data/prepare.hpp"

#include <cerrno>
#include <cstring>
#include <exception>
#include <fstream>
#include <iterator>
#include <system_error>

#include "core/error.hpp"
#include "core/log.hpp"
#include "data/shard.hpp"
#include "data/tokenizer.hpp"

namespace flowlm::data {
namespace fs = std::filesystem;

std::string shard_file_name(const std::string& name, const std::string& split, std::int64_t index) {
  return fmt::format("{}_{}_{:06d}.bin", name, split, index);
}

namespace {

/// Buffers one split's tokens and writes a shard each time shard_tokens are collected.
class ShardSink {
 public:
  ShardSink(fs::path dir, std::string name, std::string split, std::int64_t shard_tokens)
      : dir_(std::move(dir)), name_(std::move(name)), split_(std::move(split)), cap_(shard_tokens) {}

  void append(const std::int32_t* tok, std::int64_t n) {
    for (std::int64_t i = 0; i < n; ++i) {
      buf_.push_back(static_cast<std::uint16_t>(tok[i]));
      if (static_cast<std::int64_t>(buf_.size()) == cap_) flush();
    }
    tokens_ += n;
  }
  void flush() {
    if (buf_.empty()) return;
    write_shard(dir_ / shard_file_name(name_, split_, shards_), buf_);
    ++shards_;
    buf_.clear();
  }
  std::int64_t tokens() const { return tokens_; }
  std::int64_t shards() const { return shards_; }

 private:
  fs::path dir_;
  std::string name_, split_;
  std::int64_t cap_;
  std::vector<std::uint16_t> buf_;
  std::int64_t tokens_ = 0, shards_ = 0;
};

std::string read_text_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail<IoError>("{}: cannot open input text file ({})", path.string(), std::strerror(errno));
  std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) fail<IoError>("{}: read error", path.string());
  return s;
}

/// Removes shards an earlier run left, so a glob over the output never mixes two runs.
std::int64_t remove_old_shards(const fs::path& dir, const std::string& name) {
  std::int64_t removed = 0;
  for (const std::string split : {"train", "val"}) {
    const std::string prefix = name + "_" + split + "_";
    for (const auto& entry : fs::directory_iterator(dir)) {
      const std::string f = entry.path().filename().string();
      if (f.size() != prefix.size() + 10 || f.compare(0, prefix.size(), prefix) != 0) continue;
      if (f.compare(f.size() - 4, 4, ".bin") != 0) continue;
      if (f.find_first_not_of("0123456789", prefix.size()) != f.size() - 4) continue;
      std::error_code ec;
      if (fs::remove(entry.path(), ec)) ++removed;
      if (ec) fail<IoError>("{}: cannot remove an old shard: {}", entry.path().string(), ec.message());
    }
  }
  return removed;
}

PrepareSummary prepare_on_root(const PrepareOptions& opts) {
  if (opts.inputs.empty())
    fail<ConfigError>("prepare.inputs is empty; list the text files (or globs) to tokenize");
  if (opts.output_dir.empty()) fail<ConfigError>("prepare.output_dir is empty; set where the shards go");
  if (opts.name.empty() || opts.name.find('/') != std::string::npos)
    fail<ConfigError>("prepare.name = \"{}\" must be a non-empty file name prefix without '/'", opts.name);
  if (!(opts.val_fraction >= 0.0 && opts.val_fraction < 1.0))
    fail<ConfigError>("prepare.val_fraction = {} must be in [0, 1)", opts.val_fraction);
  if (opts.shard_tokens < 1)
    fail<ConfigError>("prepare.shard_tokens = {} must be at least 1", opts.shard_tokens);
  const auto tok = make_tokenizer(opts.tokenizer);
  if (tok->vocab_size() > 65536)
    fail<ConfigError>("prepare.tokenizer = \"{}\" has {} tokens, more than uint16 shards hold",
                      opts.tokenizer, tok->vocab_size());

  const auto files = expand_paths(opts.inputs);
  std::error_code ec;
  fs::create_directories(opts.output_dir, ec);
  if (ec) fail<IoError>("{}: cannot create prepare.output_dir: {}", opts.output_dir.string(), ec.message());
  const std::int64_t removed = remove_old_shards(opts.output_dir, opts.name);
  if (removed > 0)
    log::info("prepare: removed {} old {}_*.bin shards from {}", removed, opts.name,
              opts.output_dir.string());

  ShardSink train(opts.output_dir, opts.name, "train", opts.shard_tokens);
  ShardSink val(opts.output_dir, opts.name, "val", opts.shard_tokens);
  PrepareSummary s;
  std::vector<std::int32_t> doc;
  for (const auto& f : files) {
    const std::string text = read_text_file(f);
    doc.assign(1, tok->eot());
    try {
      const auto ids = tok->encode(text);
      doc.insert(doc.end(), ids.begin(), ids.end());
    } catch (const DataError& e) {
      fail<DataError>("{}: {}", f.string(), e.what());
    }
    const auto n = static_cast<std::int64_t>(doc.size());
    const auto n_val = static_cast<std::int64_t>(opts.val_fraction * static_cast<double>(n));
    val.append(doc.data(), n_val);
    train.append(doc.data() + n_val, n - n_val);
    ++s.files;
    s.bytes += static_cast<std::int64_t>(text.size());
  }
  train.flush();
  val.flush();
  s.train_tokens = train.tokens();
  s.val_tokens = val.tokens();
  s.tokens = s.train_tokens + s.val_tokens;
  s.train_shards = train.shards();
  s.val_shards = val.shards();
  return s;
}

}  // namespace

PrepareSummary prepare_text_shards(const PrepareOptions& opts, const comm::Communicator& world) {
  // Every rank learns rank 0's outcome, so nobody waits for shards that never come.
  const auto s = world.on_root<PrepareSummary>([&] { return prepare_on_root(opts); });
  log::info(
      "prepare: {} files, {} bytes -> {} tokens ({} tokenizer): train {} tokens in {} shards, val {} tokens "
      "in {} shards, in {}",
      s.files, s.bytes, s.tokens, opts.tokenizer, s.train_tokens, s.train_shards, s.val_tokens, s.val_shards,
      opts.output_dir.string());
  if (opts.val_fraction > 0 && s.val_tokens == 0)
    log::warn("prepare: val_fraction = {} gave no validation tokens", opts.val_fraction);
  if (s.train_tokens == 0) log::warn("prepare: no training tokens were written (are the inputs empty?)");
  return s;
}

}  // namespace flowlm::data
