#include "data/sampleset.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <exception>
#include <fstream>

#include "core/error.hpp"
#include "core/log.hpp"
#include "data/shard.hpp"
#include "io/hdf5.hpp"

namespace flowlm::data {
namespace fs = std::filesystem;
namespace h5 = io::h5;

Overlong parse_overlong(const std::string& s) {
  if (s == "error") return Overlong::error;
  if (s == "truncate") return Overlong::truncate;
  if (s == "drop") return Overlong::drop;
  fail<ConfigError>("prepare.overlong = \"{}\" is not one of: error, truncate, drop", s);
}

index_t SampleSet::max_input_length() const {
  index_t m = 0;
  for (index_t i = 0; i < size(); ++i) m = std::max(m, input_length(i));
  return m;
}

void SampleSet::append(const std::vector<std::int32_t>& sample_tokens, std::int64_t sample_answer_start) {
  tokens.insert(tokens.end(), sample_tokens.begin(), sample_tokens.end());
  offsets.push_back(static_cast<std::int64_t>(tokens.size()));
  answer_start.push_back(sample_answer_start);
  total = static_cast<std::int64_t>(answer_start.size());
}

namespace {

constexpr std::uint64_t kFnvOffset = 1469598103934665603ull;
constexpr std::uint64_t kFnvPrime = 1099511628211ull;

template <class T>
void fnv_bytes(std::uint64_t& h, const T& v) {
  unsigned char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));
  for (const unsigned char c : b) {
    h ^= c;
    h *= kFnvPrime;
  }
}

}  // namespace

std::string sample_set_fingerprint(const SampleSet& s) {
  std::uint64_t h = kFnvOffset;
  for (const std::int32_t t : s.tokens) fnv_bytes(h, t);
  for (const std::int64_t o : s.offsets) fnv_bytes(h, o);
  for (const std::int64_t a : s.answer_start) fnv_bytes(h, a);
  return fmt::format("{:016x}", h);
}

BuildCounts build_samples(const std::vector<PromptAnswer>& pairs, const Tokenizer& tok, index_t block_size,
                          Overlong overlong, const std::string& origin, SampleSet& out) {
  if (block_size < 1) fail<ConfigError>("prepare.block_size = {} must be at least 1", block_size);
  out.vocab_size = tok.vocab_size();
  out.tokenizer = tok.name();
  out.block_size = block_size;
  BuildCounts c;
  std::vector<std::int32_t> s;
  for (std::size_t r = 0; r < pairs.size(); ++r) {
    const auto& pa = pairs[r];
    if (pa.answer.empty())
      fail<DataError>("{}: record {} has an empty answer; every sample needs at least one answer token",
                      origin, r + 1);
    std::vector<std::int32_t> p, a;
    try {
      p = tok.encode(pa.prompt);
      a = tok.encode(pa.answer);
    } catch (const DataError& e) {
      fail<DataError>("{}: record {}: {}", origin, r + 1, e.what());
    }
    s.assign(1, tok.eot());
    s.insert(s.end(), p.begin(), p.end());
    const auto answer_start = static_cast<std::int64_t>(s.size());
    s.insert(s.end(), a.begin(), a.end());
    s.push_back(tok.eot());
    const auto input_len = static_cast<index_t>(s.size()) - 1;
    if (input_len > block_size) {
      if (overlong == Overlong::error)
        fail<DataError>(
            "{}: record {} is {} tokens long (model input {}), more than prepare.block_size = {}; raise "
            "block_size or set prepare.overlong = \"truncate\" or \"drop\"",
            origin, r + 1, s.size(), input_len, block_size);
      // Truncation keeps the prompt whole and cuts the answer; nothing left to learn = dropped.
      if (overlong == Overlong::drop || answer_start >= block_size + 1) {
        ++c.dropped;
        continue;
      }
      s.resize(static_cast<std::size_t>(block_size + 1));
      ++c.truncated;
    }
    out.append(s, answer_start);
    ++c.kept;
  }
  out.truncated += c.truncated;
  out.dropped += c.dropped;
  return c;
}

std::vector<PromptAnswer> read_jsonl(const fs::path& file, const std::string& prompt_field,
                                     const std::string& answer_field) {
  std::ifstream in(file, std::ios::binary);
  if (!in) fail<IoError>("{}: cannot open JSONL file ({})", file.string(), std::strerror(errno));
  std::vector<PromptAnswer> out;
  std::string line;
  std::int64_t lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const auto row = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (row.is_discarded() || !row.is_object())
      fail<DataError>("{}:{}: not a JSON object (expected {{\"{}\": ..., \"{}\": ...}} on each line)",
                      file.string(), lineno, prompt_field, answer_field);
    PromptAnswer pa;
    for (const auto* field : {&prompt_field, &answer_field}) {
      const auto it = row.find(*field);
      if (it == row.end())
        fail<DataError>(
            "{}:{}: missing field \"{}\" (set prepare.prompt_field / prepare.answer_field to the names "
            "your records use)",
            file.string(), lineno, *field);
      if (!it->is_string())
        fail<DataError>("{}:{}: field \"{}\" must be a string, got {}", file.string(), lineno, *field,
                        it->type_name());
      (field == &prompt_field ? pa.prompt : pa.answer) = it->get<std::string>();
    }
    out.push_back(std::move(pa));
  }
  if (in.bad()) fail<IoError>("{}: read error", file.string());
  return out;
}

void write_jsonl(const fs::path& file, const std::vector<PromptAnswer>& pairs,
                 const std::string& prompt_field, const std::string& answer_field) {
  std::ofstream out(file, std::ios::trunc);
  if (!out) fail<IoError>("{}: cannot open for writing ({})", file.string(), std::strerror(errno));
  for (const auto& pa : pairs)
    out << nlohmann::json{{prompt_field, pa.prompt}, {answer_field, pa.answer}}.dump() << '\n';
  out.flush();
  if (!out) fail<IoError>("{}: write error", file.string());
}

void write_sample_set(const fs::path& path, SampleSet& s, const std::string& sources) {
  if (s.first != 0) fail<Error>("write_sample_set: {} holds a block, not a whole set", path.string());
  s.total = s.size();
  s.fingerprint = sample_set_fingerprint(s);
  const fs::path tmp = path.string() + ".tmp";
  {
    h5::File f = h5::File::create(tmp);
    if (s.vocab_size <= 65536) {
      std::vector<std::uint16_t> t(s.tokens.begin(), s.tokens.end());
      f.write_dataset("tokens", t);
    } else {
      f.write_dataset("tokens", s.tokens);
    }
    f.write_dataset("offsets", s.offsets);
    f.write_dataset("answer_start", s.answer_start);
    f.write_attr("format_version", kSampleSetFormatVersion);
    f.write_attr("kind", "sample_set");
    f.write_attr("vocab_size", s.vocab_size);
    f.write_attr("tokenizer", s.tokenizer);
    f.write_attr("n_samples", static_cast<std::int64_t>(s.size()));
    f.write_attr("fingerprint", s.fingerprint);
    f.write_attr("block_size", s.block_size);
    f.write_attr("truncated", s.truncated);
    f.write_attr("dropped", s.dropped);
    f.write_attr("sources", sources);
    f.close();
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) fail<IoError>("{}: cannot rename {} into place: {}", path.string(), tmp.string(), ec.message());
}

SampleSetInfo read_sample_set_info(const fs::path& path) {
  const h5::File f = h5::File::open(path);
  SampleSetInfo info;
  info.path = path;
  if (!f.has_attr("kind") || f.read_attr_string("kind") != "sample_set")
    fail<IoError>(
        "{}: not a sample set (attribute 'kind' is not \"sample_set\"); make one with `flowlm prepare` "
        "and prepare.format = \"jsonl\"",
        path.string());
  const auto version = f.read_attr_int("format_version");
  if (version < 1 || version > kSampleSetFormatVersion)
    fail<IoError>("{}: sample set format_version {} is not supported (this flowlm reads up to {})",
                  path.string(), version, kSampleSetFormatVersion);
  info.n_samples = f.read_attr_int("n_samples");
  info.vocab_size = f.read_attr_int("vocab_size");
  info.block_size = f.read_attr_int("block_size");
  info.tokenizer = f.read_attr_string("tokenizer");
  info.fingerprint = f.read_attr_string("fingerprint");
  if (info.n_samples < 0)
    fail<IoError>("{}: attribute n_samples = {} is negative", path.string(), info.n_samples);
  for (const char* d : {"tokens", "offsets", "answer_start"}) {
    if (!f.is_dataset(d)) fail<IoError>("{}: dataset '{}' is missing", path.string(), d);
    // Readers take rows of these as flat integer arrays: another rank or type is a foreign file.
    const auto di = f.dataset_info(d);
    if (di.shape.size() != 1 || !h5::dtype_is_int(di.dtype))
      fail<IoError>("{}: dataset '{}' is {} {}, expected a one-dimensional integer dataset", path.string(), d,
                    h5::dtype_name(di.dtype), shape_str(di.shape));
  }
  const auto off = f.dataset_info("offsets"), ans = f.dataset_info("answer_start");
  if (off.shape[0] - 1 != info.n_samples || ans.shape[0] != info.n_samples)
    fail<IoError>("{}: offsets {} / answer_start {} do not match n_samples = {}", path.string(),
                  shape_str(off.shape), shape_str(ans.shape), info.n_samples);
  return info;
}

SampleSet read_sample_set(const fs::path& path, std::int64_t first, std::int64_t count) {
  const SampleSetInfo info = read_sample_set_info(path);
  // Compared without forming first + count, which a caller's values may overflow.
  const std::int64_t n = info.n_samples;
  if (first >= 0 && first <= n && count < 0) count = n - first;
  if (first < 0 || first > n || count < 0 || count > n - first)
    fail<DataError>("{}: {} samples from sample {} are out of range (the set has {})", path.string(), count,
                    first, n);
  const h5::File f = h5::File::open(path);
  SampleSet s;
  s.vocab_size = info.vocab_size;
  s.tokenizer = info.tokenizer;
  s.fingerprint = info.fingerprint;
  s.block_size = info.block_size;
  s.first = first;
  s.total = info.n_samples;
  std::vector<std::int64_t> off(static_cast<std::size_t>(count + 1));
  f.open_dataset("offsets").read_rows(first, count + 1, off.data());
  s.answer_start.resize(static_cast<std::size_t>(count));
  if (count > 0) f.open_dataset("answer_start").read_rows(first, count, s.answer_start.data());
  const auto tokens = f.open_dataset("tokens");
  for (std::int64_t i = 0; i < count; ++i)
    if (off[i] < 0 || off[i + 1] < 0 || off[i] > tokens.numel() || off[i + 1] > tokens.numel() ||
        off[i + 1] - off[i] < 2)
      fail<DataError>("{}: dataset 'offsets' is invalid at sample {} ({} -> {}, {} tokens in the file)",
                      path.string(), first + i, off[i], off[i + 1], tokens.numel());
  const std::int64_t t0 = off.front(), nt = off.back() - off.front();
  s.tokens.resize(static_cast<std::size_t>(nt));
  if (nt > 0) tokens.read_rows(t0, nt, s.tokens.data());
  s.offsets.resize(off.size());
  for (std::size_t i = 0; i < off.size(); ++i) s.offsets[i] = off[i] - t0;
  for (std::int64_t i = 0; i < count; ++i) {
    const auto a = s.answer_start[static_cast<std::size_t>(i)];
    if (a < 1 || a >= s.length(i))
      fail<DataError>(
          "{}: sample {} has answer_start {} outside [1, {}): an empty answer or a sample without the "
          "leading end-of-text token",
          path.string(), first + i, a, s.length(i));
  }
  for (std::size_t i = 0; i < s.tokens.size(); ++i)
    if (s.tokens[i] < 0 || s.tokens[i] >= s.vocab_size)
      fail<DataError>("{}: token {} at index {} of dataset 'tokens' is outside [0, vocab_size = {})",
                      path.string(), s.tokens[i], t0 + static_cast<std::int64_t>(i), s.vocab_size);
  return s;
}

std::pair<std::int64_t, std::int64_t> rank_block(std::int64_t n, int rank, int world) {
  const std::int64_t base = n / world, extra = n % world;
  const std::int64_t first = rank * base + std::min<std::int64_t>(rank, extra);
  return {first, base + (rank < extra ? 1 : 0)};
}

void pack_samples(const SampleSet& set, const std::vector<index_t>& ids, PaddedBatch& out, index_t min_T) {
  index_t T = std::max<index_t>(min_T, 1);
  for (const index_t i : ids) T = std::max(T, set.input_length(i));
  out.B = static_cast<index_t>(ids.size());
  out.T = T;
  const auto n = static_cast<std::size_t>(out.B * T);
  out.inputs.assign(n, 0);
  out.targets.assign(n, 0);
  out.mask.assign(n, 0.0f);
  for (index_t b = 0; b < out.B; ++b) {
    const index_t i = ids[static_cast<std::size_t>(b)];
    const std::int32_t* s = set.sample(i);
    const index_t L = set.input_length(i), a = set.answer_start[i];
    for (index_t t = 0; t < L; ++t) {
      out.inputs[b * T + t] = s[t];
      out.targets[b * T + t] = s[t + 1];
      out.mask[b * T + t] = t + 1 >= a ? 1.0f : 0.0f;
    }
  }
}

// ---- SampleLoader ------------------------------------------------------------------------

SampleLoader::SampleLoader(index_t n_samples, index_t global_batch, index_t micro_batch, int rank, int world,
                           std::uint64_t seed, bool shuffle)
    : n_(n_samples),
      global_batch_(global_batch),
      micro_batch_(micro_batch),
      accum_(0),
      rank_(rank),
      world_(world),
      seed_(seed),
      shuffle_(shuffle) {
  if (n_ < 1) fail<DataError>("the sample set is empty: nothing to train on");
  if (global_batch < 1 || micro_batch < 1 || global_batch % (micro_batch * world) != 0)
    fail<ConfigError>("train.global_batch = {} must be a multiple of train.micro_batch ({}) x ranks ({})",
                      global_batch, micro_batch, world);
  accum_ = global_batch / (micro_batch * world);
}

index_t SampleLoader::sample_at(std::int64_t position) const {
  const std::int64_t epoch = position / n_;
  const index_t k = position % n_;
  if (!shuffle_) return k;
  if (epoch != cached_epoch_) {
    cached_perm_ = epoch_permutation(n_, seed_, epoch);
    cached_epoch_ = epoch;
  }
  return cached_perm_[static_cast<std::size_t>(k)];
}

std::vector<index_t> SampleLoader::step_samples() const {
  std::vector<index_t> out(static_cast<std::size_t>(global_batch_));
  for (index_t j = 0; j < global_batch_; ++j)
    out[static_cast<std::size_t>(j)] = sample_at(cursor_.position + j);
  return out;
}

std::vector<index_t> SampleLoader::micro_batch_samples(index_t m) const {
  std::vector<index_t> out(static_cast<std::size_t>(micro_batch_));
  const std::int64_t start = cursor_.position + (m * world_ + rank_) * micro_batch_;
  for (index_t j = 0; j < micro_batch_; ++j) out[static_cast<std::size_t>(j)] = sample_at(start + j);
  return out;
}

void SampleLoader::restore(LoaderCursor c) {
  if (c.position < 0) fail<DataError>("sample loader cursor {} is negative", c.position);
  cursor_ = c;
}

// ---- prepare for JSONL -------------------------------------------------------------------

namespace {

SamplePrepareSummary prepare_samples_on_root(const SamplePrepareOptions& opts) {
  if (opts.inputs.empty()) fail<ConfigError>("prepare.inputs is empty; list the JSONL files (or globs)");
  if (opts.name.empty() || opts.name.find('/') != std::string::npos)
    fail<ConfigError>("prepare.name = \"{}\" must be a non-empty file name prefix without '/'", opts.name);
  if (!(opts.val_fraction >= 0.0 && opts.val_fraction < 1.0))
    fail<ConfigError>("prepare.val_fraction = {} must be in [0, 1)", opts.val_fraction);
  const auto tok = make_tokenizer(opts.tokenizer);
  std::vector<PromptAnswer> all;
  std::string sources;
  for (const auto& f : expand_paths(opts.inputs)) {
    auto recs = read_jsonl(f, opts.prompt_field, opts.answer_field);
    all.insert(all.end(), std::make_move_iterator(recs.begin()), std::make_move_iterator(recs.end()));
    sources += (sources.empty() ? "" : ", ") + f.string();
  }
  if (all.empty()) fail<DataError>("prepare: the JSONL inputs ({}) hold no records", sources);
  std::error_code ec;
  fs::create_directories(opts.output_dir, ec);
  if (ec) fail<IoError>("{}: cannot create prepare.output_dir: {}", opts.output_dir.string(), ec.message());

  const auto n_val = static_cast<std::size_t>(opts.val_fraction * static_cast<double>(all.size()));
  const std::vector<PromptAnswer> val(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(n_val));
  const std::vector<PromptAnswer> train(all.begin() + static_cast<std::ptrdiff_t>(n_val), all.end());
  SamplePrepareSummary sum;
  sum.records = static_cast<std::int64_t>(all.size());
  for (const auto& [split, recs] : {std::pair<const char*, const std::vector<PromptAnswer>*>{"train", &train},
                                    std::pair<const char*, const std::vector<PromptAnswer>*>{"val", &val}}) {
    if (recs->empty()) continue;
    SampleSet s;
    const BuildCounts c = build_samples(*recs, *tok, opts.block_size, opts.overlong, sources, s);
    if (s.size() == 0)
      fail<DataError>("prepare: every {} record was dropped as longer than block_size = {}", split,
                      opts.block_size);
    write_sample_set(opts.output_dir / fmt::format("{}_{}.h5", opts.name, split), s, sources);
    (std::string(split) == "train" ? sum.train_samples : sum.val_samples) = c.kept;
    sum.truncated += c.truncated;
    sum.dropped += c.dropped;
  }
  return sum;
}

}  // namespace

SamplePrepareSummary prepare_sample_sets(const SamplePrepareOptions& opts, const comm::Communicator& world) {
  const auto s = world.on_root<SamplePrepareSummary>([&] { return prepare_samples_on_root(opts); });
  log::info(
      "prepare: {} records -> {} train samples ({}_train.h5), {} val samples, {} truncated, {} dropped "
      "(block_size {}), in {}",
      s.records, s.train_samples, opts.name, s.val_samples, s.truncated, s.dropped, opts.block_size,
      opts.output_dir.string());
  return s;
}

}  // namespace flowlm::data
