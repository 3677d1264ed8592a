#include "data/prepare.hpp"

#include <cerrno>
#include <chrono>
#include <cstring>
#include <exception>
#include <fstream>
#include <iterator>
#include <system_error>
#include <tuple>

#include "core/error.hpp"
#include "core/log.hpp"
#include "data/shard.hpp"

namespace flowlm::data {
namespace fs = std::filesystem;

std::string shard_file_name(const std::string& name, const std::string& split, std::int64_t index) {
  return fmt::format("{}_{}_{:06d}.bin", name, split, index);
}

Framing framing_of(const Tokenizer& tok) {
  Framing f;
  const TokenId eot = tok.eot();
  f.start = tok.special_prefix();
  if (f.start.empty()) f.start = {eot};
  f.end = tok.special_suffix();
  if (f.start != std::vector<TokenId>{eot} && (f.end.empty() || f.end.back() != eot)) f.end.push_back(eot);
  return f;
}

const char* const kAlpacaTemplate =
    "Below is an instruction that describes a task. Write a response that appropriately completes the "
    "request.\n\n### Instruction:\n{prompt}\n\n### Response:";

std::string prompt_template(const std::string& spec) {
  if (spec == "none") return "{prompt}";
  if (spec == "alpaca") return kAlpacaTemplate;
  if (spec.find("{prompt}") == std::string::npos)
    fail<ConfigError>(
        "prepare.template = \"{}\" is neither \"none\" nor \"alpaca\" nor a template with a {{prompt}} "
        "placeholder",
        spec);
  return spec;
}

std::string apply_prompt_template(const std::string& tmpl, const std::string& prompt) {
  static const std::string key = "{prompt}";
  std::string out;
  std::size_t at = 0;
  for (std::size_t hit = tmpl.find(key); hit != std::string::npos; hit = tmpl.find(key, at)) {
    out.append(tmpl, at, hit - at);
    out += prompt;
    at = hit + key.size();
  }
  out.append(tmpl, at, std::string::npos);
  return out;
}

namespace {

/// Runs f on every rank; when it throws on any rank, every rank throws: a failing rank its own
/// error, the others flowlm::Error with the message of the lowest failing rank (so rank 0, which
/// prints, always tells what went wrong). Collective.
template <class F>
void on_all_ranks(const comm::Communicator& world, F&& f) {
  std::exception_ptr error;
  std::string message;
  try {
    f();
  } catch (const std::exception& e) {
    error = std::current_exception();
    message = e.what();
  }
  if (world.size() == 1) {
    if (error) std::rethrow_exception(error);
    return;
  }
  const auto failed = world.allgather(std::int64_t{error ? 1 : 0});
  int first = -1;
  for (int r = 0; r < world.size() && first < 0; ++r)
    if (failed[static_cast<std::size_t>(r)]) first = r;
  if (first < 0) return;
  world.broadcast(message, first);
  if (error) std::rethrow_exception(error);
  throw Error(fmt::format("failed on rank {}: {}", first, message));
}

/// Rank 0's progress over its share of the input: a line every few seconds (MB/s, ETA).
class Progress {
 public:
  Progress(std::int64_t total_bytes, int world) : total_(total_bytes), world_(world) {}
  void add(std::int64_t bytes) {
    done_ += bytes;
    const double t = seconds();
    if (total_ > 0) log::progress(static_cast<double>(done_) / static_cast<double>(total_));
    if (t - last_ < 5.0 || done_ >= total_) return;
    last_ = t;
    const double rate = static_cast<double>(done_) / t;
    log::info("prepare: tokenized {:.1f} of {:.1f} MB{} ({:.0f}%), {:.2f} MB/s, ETA {}", done_ / 1e6,
              total_ / 1e6, world_ > 1 ? " on rank 0" : "",
              100.0 * static_cast<double>(done_) / static_cast<double>(total_), rate / 1e6,
              log::format_duration(static_cast<double>(total_ - done_) / rate));
  }
  double seconds() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }

 private:
  std::int64_t total_, done_ = 0;
  int world_;
  double last_ = 0;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

/// Where a rank's tokens of one split go: the shards themselves, or a scratch file for rank 0.
class TokenSink {
 public:
  virtual ~TokenSink() = default;
  virtual void append(const TokenId* tok, std::int64_t n) = 0;
  std::int64_t tokens() const { return tokens_; }

 protected:
  std::int64_t tokens_ = 0;
};

/// Buffers one split's tokens and writes a shard each time shard_tokens are collected.
class ShardSink final : public TokenSink {
 public:
  ShardSink(fs::path dir, std::string name, std::string split, std::int64_t shard_tokens)
      : dir_(std::move(dir)), name_(std::move(name)), split_(std::move(split)), cap_(shard_tokens) {}

  template <class T>
  void append_any(const T* tok, std::int64_t n) {
    for (std::int64_t i = 0; i < n; ++i) {
      buf_.push_back(static_cast<std::uint16_t>(tok[i]));
      if (static_cast<std::int64_t>(buf_.size()) == cap_) flush();
    }
    tokens_ += n;
  }
  void append(const TokenId* tok, std::int64_t n) override { append_any(tok, n); }
  void flush() {
    if (buf_.empty()) return;
    write_shard(dir_ / shard_file_name(name_, split_, shards_), buf_);
    ++shards_;
    buf_.clear();
  }
  std::int64_t shards() const { return shards_; }

 private:
  fs::path dir_;
  std::string name_, split_;
  std::int64_t cap_;
  std::vector<std::uint16_t> buf_;
  std::int64_t shards_ = 0;
};

/// uint16 tokens appended to a scratch file.
class ScratchSink final : public TokenSink {
 public:
  explicit ScratchSink(fs::path path)
      : path_(std::move(path)), out_(path_, std::ios::binary | std::ios::trunc) {
    if (!out_) fail<IoError>("{}: cannot create a scratch file ({})", path_.string(), std::strerror(errno));
  }
  void append(const TokenId* tok, std::int64_t n) override {
    buf_.assign(tok, tok + n);
    out_.write(reinterpret_cast<const char*>(buf_.data()), static_cast<std::streamsize>(n * 2));
    if (!out_) fail<IoError>("{}: write error", path_.string());
    tokens_ += n;
  }
  void close() {
    out_.close();
    if (!out_) fail<IoError>("{}: write error", path_.string());
  }

 private:
  fs::path path_;
  std::ofstream out_;
  std::vector<std::uint16_t> buf_;
};

/// Streams a scratch file of uint16 tokens into a shard sink.
void copy_scratch(const fs::path& path, ShardSink& sink) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail<IoError>("{}: cannot open a scratch file ({})", path.string(), std::strerror(errno));
  std::vector<std::uint16_t> buf(1 << 20);
  while (in) {
    in.read(reinterpret_cast<char*>(buf.data()), static_cast<std::streamsize>(buf.size() * 2));
    const auto n = static_cast<std::int64_t>(in.gcount() / 2);
    if (n > 0) sink.append_any(buf.data(), n);
  }
  if (in.bad()) fail<IoError>("{}: read error", path.string());
}

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

void check_common(const std::vector<std::string>& inputs, const fs::path& output_dir, const std::string& name,
                  double val_fraction) {
  if (inputs.empty()) fail<ConfigError>("prepare.inputs is empty; list the files (or globs) to tokenize");
  if (output_dir.empty()) fail<ConfigError>("prepare.output_dir is empty; set where the output goes");
  if (name.empty() || name.find('/') != std::string::npos)
    fail<ConfigError>("prepare.name = \"{}\" must be a non-empty file name prefix without '/'", name);
  if (!(val_fraction >= 0.0 && val_fraction < 1.0))
    fail<ConfigError>("prepare.val_fraction = {} must be in [0, 1)", val_fraction);
}

std::unique_ptr<Tokenizer> open_tokenizer(const std::string& spec) {
  auto tok = make_tokenizer(spec);
  try {
    (void)framing_of(*tok);
  } catch (const DataError& e) {
    fail<ConfigError>("prepare.tokenizer = \"{}\": {}", spec, e.what());
  }
  return tok;
}

fs::path scratch_dir(const fs::path& output_dir, const std::string& name) {
  return output_dir / fmt::format(".{}.prepare-scratch", name);
}

/// Creates output_dir and a fresh scratch directory in it (rank 0).
void make_dirs(const fs::path& output_dir, const fs::path& scratch) {
  std::error_code ec;
  fs::create_directories(output_dir, ec);
  if (ec) fail<IoError>("{}: cannot create prepare.output_dir: {}", output_dir.string(), ec.message());
  if (scratch.empty()) return;
  fs::remove_all(scratch, ec);
  fs::create_directories(scratch, ec);
  if (ec) fail<IoError>("{}: cannot create a scratch directory: {}", scratch.string(), ec.message());
}

/// The files of rank r: a contiguous block of about equal bytes (each file goes to the rank its
/// middle byte falls on).
std::pair<std::size_t, std::size_t> file_block(const std::vector<std::int64_t>& sizes, int rank, int world) {
  std::int64_t total = 0;
  for (const auto s : sizes) total += s;
  if (total == 0) {
    const auto [first, count] = rank_block(static_cast<std::int64_t>(sizes.size()), rank, world);
    return {static_cast<std::size_t>(first), static_cast<std::size_t>(first + count)};
  }
  std::size_t b = sizes.size(), e = sizes.size();
  std::int64_t before = 0;
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    const double mid = static_cast<double>(before) + static_cast<double>(sizes[i]) / 2;
    const int owner = std::min(world - 1, static_cast<int>(mid * world / static_cast<double>(total)));
    if (owner >= rank && b == sizes.size()) b = i;
    if (owner > rank && e == sizes.size()) e = i;
    before += sizes[i];
  }
  return {b, std::max(b, e)};
}

struct ShardCounts {
  std::int64_t train = 0, val = 0;
};

}  // namespace

// ---- text -> token shards ------------------------------------------------------------------

PrepareSummary prepare_text_shards(const PrepareOptions& opts, const comm::Communicator& world) {
  std::unique_ptr<Tokenizer> tok;
  std::vector<fs::path> files;
  std::vector<std::int64_t> sizes;
  on_all_ranks(world, [&] {
    check_common(opts.inputs, opts.output_dir, opts.name, opts.val_fraction);
    if (opts.shard_tokens < 1)
      fail<ConfigError>("prepare.shard_tokens = {} must be at least 1", opts.shard_tokens);
    tok = open_tokenizer(opts.tokenizer);
    if (tok->vocab_size() > 65536)
      fail<ConfigError>(
          "prepare.tokenizer = \"{}\" has {} tokens, more than uint16 token shards hold (use prepare.format "
          "= "
          "\"jsonl\" sample sets, which store int32)",
          opts.tokenizer, tok->vocab_size());
    files = expand_paths(opts.inputs);
    for (const auto& f : files) {
      std::error_code ec;
      const auto n = fs::file_size(f, ec);
      if (ec) fail<IoError>("{}: cannot read its size: {}", f.string(), ec.message());
      sizes.push_back(static_cast<std::int64_t>(n));
    }
  });
  const bool multi = world.size() > 1;
  const fs::path scratch = multi ? scratch_dir(opts.output_dir, opts.name) : fs::path();
  on_all_ranks(world, [&] {
    if (!world.is_root()) return;
    make_dirs(opts.output_dir, scratch);
    const std::int64_t removed = remove_old_shards(opts.output_dir, opts.name);
    if (removed > 0)
      log::info("prepare: removed {} old {}_*.bin shards from {}", removed, opts.name,
                opts.output_dir.string());
  });

  // Each rank tokenizes its block of files, into the shards (one rank) or scratch files.
  // Not a structured binding: the lambdas below capture them (C++17 cannot capture bindings).
  const auto block = file_block(sizes, world.rank(), world.size());
  const std::size_t first = block.first, last = block.second;
  std::int64_t my_bytes = 0;
  for (std::size_t i = first; i < last; ++i) my_bytes += sizes[i];
  const Framing fr = framing_of(*tok);
  std::unique_ptr<TokenSink> train, val;
  PrepareSummary local;
  Progress progress(my_bytes, world.size());
  on_all_ranks(world, [&] {
    if (multi) {
      train = std::make_unique<ScratchSink>(scratch / fmt::format("rank{}.train", world.rank()));
      val = std::make_unique<ScratchSink>(scratch / fmt::format("rank{}.val", world.rank()));
    } else {
      train = std::make_unique<ShardSink>(opts.output_dir, opts.name, "train", opts.shard_tokens);
      val = std::make_unique<ShardSink>(opts.output_dir, opts.name, "val", opts.shard_tokens);
    }
    std::vector<TokenId> doc;
    for (std::size_t i = first; i < last; ++i) {
      const std::string text = read_text_file(files[i]);
      doc = fr.start;
      try {
        const auto ids = tok->encode(text);
        doc.insert(doc.end(), ids.begin(), ids.end());
      } catch (const DataError& e) {
        fail<DataError>("{}: {}", files[i].string(), e.what());
      }
      doc.insert(doc.end(), fr.end.begin(), fr.end.end());
      const auto n = static_cast<std::int64_t>(doc.size());
      const auto n_val = static_cast<std::int64_t>(opts.val_fraction * static_cast<double>(n));
      val->append(doc.data(), n_val);
      train->append(doc.data() + n_val, n - n_val);
      ++local.files;
      local.bytes += static_cast<std::int64_t>(text.size());
      progress.add(static_cast<std::int64_t>(text.size()));
    }
    if (multi) {
      static_cast<ScratchSink&>(*train).close();
      static_cast<ScratchSink&>(*val).close();
    } else {
      static_cast<ShardSink&>(*train).flush();
      static_cast<ShardSink&>(*val).flush();
    }
    local.train_tokens = train->tokens();
    local.val_tokens = val->tokens();
  });
  const double tokenize_seconds = world.max(progress.seconds());

  PrepareSummary s;
  s.files = world.sum(local.files);
  s.bytes = world.sum(local.bytes);
  s.train_tokens = world.sum(local.train_tokens);
  s.val_tokens = world.sum(local.val_tokens);
  s.tokens = s.train_tokens + s.val_tokens;
  s.vocab_size = tok->vocab_size();
  if (multi) {
    // Rank 0 joins the ranks' tokens in rank order: the shards of a one-rank run.
    const auto shards = world.on_root<ShardCounts>([&] {
      ShardSink train_out(opts.output_dir, opts.name, "train", opts.shard_tokens);
      ShardSink val_out(opts.output_dir, opts.name, "val", opts.shard_tokens);
      for (int r = 0; r < world.size(); ++r) {
        copy_scratch(scratch / fmt::format("rank{}.val", r), val_out);
        copy_scratch(scratch / fmt::format("rank{}.train", r), train_out);
      }
      train_out.flush();
      val_out.flush();
      std::error_code ec;
      fs::remove_all(scratch, ec);
      return ShardCounts{train_out.shards(), val_out.shards()};
    });
    s.train_shards = shards.train;
    s.val_shards = shards.val;
  } else {
    s.train_shards = static_cast<ShardSink&>(*train).shards();
    s.val_shards = static_cast<ShardSink&>(*val).shards();
  }
  const double rate =
      tokenize_seconds > 0 ? static_cast<double>(s.bytes) / tokenize_seconds / 1e6 : 0.0;  // MB/s
  log::info(
      "prepare: {} files, {} bytes -> {} tokens: train {} tokens in {} shards, val {} tokens in {} shards, "
      "in {} "
      "({:.2f} MB/s on {} rank{}); tokenizer {} ({}): data.vocab_size must be at least {}",
      s.files, s.bytes, s.tokens, s.train_tokens, s.train_shards, s.val_tokens, s.val_shards,
      opts.output_dir.string(), rate, world.size(), world.size() > 1 ? "s" : "", opts.tokenizer,
      tok->describe(), s.vocab_size);
  if (opts.val_fraction > 0 && s.val_tokens == 0)
    log::warn("prepare: val_fraction = {} gave no validation tokens", opts.val_fraction);
  if (s.train_tokens == 0) log::warn("prepare: no training tokens were written (are the inputs empty?)");
  return s;
}

// ---- JSONL -> sample sets --------------------------------------------------------------------

bool build_sample(const Tokenizer& tok, const Framing& fr, const std::string& tmpl, const PromptAnswer& pa,
                  index_t block_size, Overlong overlong, const std::string& origin,
                  std::vector<std::int32_t>& s, std::int64_t& answer_start, bool& truncated) {
  truncated = false;
  if (pa.answer.empty())
    fail<DataError>("{} has an empty answer; every sample needs at least one answer token", origin);
  std::vector<TokenId> p, a;
  try {
    p = tok.encode(apply_prompt_template(tmpl, pa.prompt));
    a = tok.encode(pa.answer);
  } catch (const DataError& e) {
    fail<DataError>("{}: {}", origin, e.what());
  }
  s = fr.start;
  s.insert(s.end(), p.begin(), p.end());
  answer_start = static_cast<std::int64_t>(s.size());
  s.insert(s.end(), a.begin(), a.end());
  if (fr.end.empty())
    s.push_back(tok.eot());
  else
    s.insert(s.end(), fr.end.begin(), fr.end.end());
  const auto input_len = static_cast<index_t>(s.size()) - 1;
  if (input_len <= block_size) return true;
  if (overlong == Overlong::error)
    fail<DataError>(
        "{} is {} tokens long (model input {}), more than prepare.block_size = {}; raise block_size or set "
        "prepare.overlong = \"truncate\" or \"drop\"",
        origin, s.size(), input_len, block_size);
  // Truncation keeps the prompt whole and cuts the answer; nothing left to learn = dropped.
  if (overlong == Overlong::drop || answer_start >= block_size + 1) return false;
  s.resize(static_cast<std::size_t>(block_size + 1));
  truncated = true;
  return true;
}

namespace {

/// One record's outcome on the rank that tokenized it.
struct LocalSample {
  std::int64_t status = 0;  // 0 dropped, 1 kept, 2 truncated
  std::int64_t answer_start = 0;
  std::vector<std::int32_t> tokens;
};

void write_local_samples(const fs::path& path, const std::vector<LocalSample>& v) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) fail<IoError>("{}: cannot create a scratch file ({})", path.string(), std::strerror(errno));
  for (const auto& x : v) {
    const std::int64_t head[3] = {x.status, x.answer_start, static_cast<std::int64_t>(x.tokens.size())};
    out.write(reinterpret_cast<const char*>(head), sizeof head);
    out.write(reinterpret_cast<const char*>(x.tokens.data()),
              static_cast<std::streamsize>(x.tokens.size() * 4));
  }
  out.close();
  if (!out) fail<IoError>("{}: write error", path.string());
}

std::vector<LocalSample> read_local_samples(const fs::path& path, std::int64_t count) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail<IoError>("{}: cannot open a scratch file ({})", path.string(), std::strerror(errno));
  std::vector<LocalSample> v(static_cast<std::size_t>(count));
  for (auto& x : v) {
    std::int64_t head[3];
    in.read(reinterpret_cast<char*>(head), sizeof head);
    x.status = head[0];
    x.answer_start = head[1];
    x.tokens.resize(static_cast<std::size_t>(head[2]));
    in.read(reinterpret_cast<char*>(x.tokens.data()), static_cast<std::streamsize>(x.tokens.size() * 4));
    if (!in) fail<IoError>("{}: truncated scratch file", path.string());
  }
  return v;
}

}  // namespace

JsonlPrepareSummary prepare_jsonl_sample_sets(const JsonlPrepareOptions& opts,
                                              const comm::Communicator& world) {
  std::unique_ptr<Tokenizer> tok;
  std::string tmpl, sources;
  std::vector<PromptAnswer> all;
  std::vector<std::string> origin;  // "file: record k" per record
  on_all_ranks(world, [&] {
    check_common(opts.inputs, opts.output_dir, opts.name, opts.val_fraction);
    if (opts.block_size < 1) fail<ConfigError>("prepare.block_size = {} must be at least 1", opts.block_size);
    tmpl = prompt_template(opts.prompt_template);
    tok = open_tokenizer(opts.tokenizer);
    for (const auto& f : expand_paths(opts.inputs)) {
      auto recs = read_jsonl(f, opts.prompt_field, opts.answer_field);
      for (std::size_t k = 0; k < recs.size(); ++k)
        origin.push_back(fmt::format("{}: record {}", f.string(), k + 1));
      all.insert(all.end(), std::make_move_iterator(recs.begin()), std::make_move_iterator(recs.end()));
      sources += (sources.empty() ? "" : ", ") + f.string();
    }
    if (all.empty()) fail<DataError>("prepare: the JSONL inputs ({}) hold no records", sources);
  });
  const bool multi = world.size() > 1;
  const fs::path scratch = multi ? scratch_dir(opts.output_dir, opts.name) : fs::path();
  on_all_ranks(world, [&] {
    if (world.is_root()) make_dirs(opts.output_dir, scratch);
  });

  const auto n = static_cast<std::int64_t>(all.size());
  const auto mine_block = rank_block(n, world.rank(), world.size());  // captured below: no structured binding
  const std::int64_t first = mine_block.first, count = mine_block.second;
  const Framing fr = framing_of(*tok);
  std::vector<LocalSample> mine(static_cast<std::size_t>(count));
  on_all_ranks(world, [&] {
    for (std::int64_t i = 0; i < count; ++i) {
      const auto g = static_cast<std::size_t>(first + i);
      auto& x = mine[static_cast<std::size_t>(i)];
      bool truncated = false;
      const bool kept = build_sample(*tok, fr, tmpl, all[g], opts.block_size, opts.overlong, origin[g],
                                     x.tokens, x.answer_start, truncated);
      x.status = kept ? (truncated ? 2 : 1) : 0;
      if (!kept) x.tokens.clear();
    }
    if (multi) write_local_samples(scratch / fmt::format("rank{}.samples", world.rank()), mine);
  });

  const auto n_val = static_cast<std::int64_t>(opts.val_fraction * static_cast<double>(n));
  const auto s = world.on_root<JsonlPrepareSummary>([&] {
    JsonlPrepareSummary sum;
    sum.records = n;
    sum.vocab_size = tok->vocab_size();
    SampleSet train, val;
    for (SampleSet* set : {&train, &val}) {
      set->vocab_size = tok->vocab_size();
      set->tokenizer = tok->name();
      set->block_size = opts.block_size;
    }
    std::int64_t global = 0;
    for (int r = 0; r < world.size(); ++r) {
      const auto block = rank_block(n, r, world.size());
      std::vector<LocalSample> theirs;
      if (multi) theirs = read_local_samples(scratch / fmt::format("rank{}.samples", r), block.second);
      const auto& v = multi ? theirs : mine;
      for (const auto& x : v) {
        SampleSet& set = global++ < n_val ? val : train;
        if (x.status == 0) {
          ++set.dropped;
          ++sum.dropped;
          continue;
        }
        if (x.status == 2) {
          ++set.truncated;
          ++sum.truncated;
        }
        set.append(x.tokens, x.answer_start);
      }
    }
    std::error_code ec;
    if (multi) fs::remove_all(scratch, ec);
    for (const auto& [split, set, records] :
         {std::tuple{"train", &train, n - n_val}, std::tuple{"val", &val, n_val}}) {
      if (records == 0) continue;
      if (set->size() == 0)
        fail<DataError>("prepare: every {} record was dropped as longer than block_size = {}", split,
                        opts.block_size);
      write_sample_set(opts.output_dir / fmt::format("{}_{}.h5", opts.name, split), *set, sources);
    }
    sum.train_samples = train.size();
    sum.val_samples = val.size();
    return sum;
  });
  log::info(
      "prepare: {} records -> {} train samples ({}_train.h5), {} val samples, {} truncated, {} dropped "
      "(block_size {}; tokenizer {} ({}); template {}), in {}",
      s.records, s.train_samples, opts.name, s.val_samples, s.truncated, s.dropped, opts.block_size,
      opts.tokenizer, tok->describe(), opts.prompt_template, opts.output_dir.string());
  return s;
}

}  // namespace flowlm::data
