// Generation benchmarks (run by tests/bench/run_generate_bench.sh; prints one JSON line per run).
//
//   bench_generate --mode exact-match [--n-layer 4 --n-embd 128 --n-head 4 --samples 500 --batch 16
//                  --shots 0 --rounds 2]
//     The sample-set exact-match eval of one checkpoint three ways in one process, interleaved in
//     rounds: the former eval (the loss pass, then greedy decoding per micro-batch that reruns the
//     whole sequence for every token), the same with greedy decoding on the KV cache, and today's
//     one pass (the teacher-forced verdict equals greedy decoding's). The answers of the first two
//     must be equal and the three exact-match counts too (the run fails otherwise). A synthetic
//     prompt/answer set of the demo's tasks, byte tokenizer; --shots N puts N other samples in front
//     of every prompt (few-shot prompts, block_size 256).
//
//   bench_generate --mode generate [--arch gpt2|llama --n-layer 6 --n-head 6 --n-embd 384 --vocab 256
//                  --block 128 --prompts 8 --prompt-len 64 --new 64 --batch 8 --rounds 3 --save model.h5]
//     Generated tokens/s of model::generate (KV cache, greedy, no end-of-text stop so every prompt
//     gets exactly --new tokens) on a seeded random model; --save writes that model as a checkpoint
//     (for flowlm export and bench_generate_torch.py). Median of --rounds runs after one warm-up.
#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "comm/comm.hpp"
#include "config/config.hpp"
#include "data/sampleset.hpp"
#include "data/synthetic.hpp"
#include "data/tokenizer.hpp"
#include "io/checkpoint.hpp"
#include "kernels/backend.hpp"
#include "model/checkpoint.hpp"
#include "model/decode.hpp"
#include "model/transformer.hpp"
#include "train/evaluate.hpp"

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Weights of a seeded init, scaled so that greedy decoding does not collapse onto one token.
void init(flowlm::model::Transformer& m, std::uint64_t seed) {
  m.init_random(seed);
  float* p = m.params();
  for (const auto& s : m.param_table())
    if (s.shape.size() == 2)
      for (flowlm::index_t i = 0; i < s.numel; ++i) p[s.offset + i] *= 4.0f;
}

void save(const flowlm::model::Transformer& m, const std::string& path) {
  flowlm::config::JobConfig job;
  job.model = m.config();
  flowlm::io::CheckpointMeta meta;
  meta.config_toml = flowlm::config::to_toml(job);
  meta.model_attrs = flowlm::model::model_attrs(m.config());
  meta.extra["kind"] = "bench";
  std::vector<flowlm::io::TensorRef> refs;
  for (const auto& p : m.param_table()) refs.push_back({p.name, p.shape, m.params() + p.offset, 0});
  flowlm::io::write_checkpoint(path, meta, refs, {}, flowlm::comm::Communicator::self());
}

}  // namespace

int main(int argc, char** argv) {
  flowlm::comm::Environment mpi(argc, argv);
  flowlm::kernels::BackendScope backend(argc, argv);
  CLI::App app{"flowlm generation benchmarks"};
  std::string mode = "generate", arch = "gpt2", save_path;
  // -1: the mode's default (exact-match: 4 layers, 4 heads, d=128, micro-batch 16; generate: 6, 6, 384, 8).
  std::int64_t n_layer = -1, n_head = -1, n_embd = -1, vocab = 256, prompts = 8, prompt_len = 64, n_new = 64,
               batch = -1, samples = 500, n_kv_head = 0, shots = 0, block = 128;
  int rounds = 3;
  app.add_option("--mode", mode)->check(CLI::IsMember({"generate", "exact-match"}));
  app.add_option("--arch", arch)->check(CLI::IsMember({"gpt2", "llama"}));
  app.add_option("--n-layer", n_layer);
  app.add_option("--n-head", n_head);
  app.add_option("--n-kv-head", n_kv_head, "llama: key/value heads (0: n_head / 3, a divisor)");
  app.add_option("--n-embd", n_embd);
  app.add_option("--vocab", vocab);
  app.add_option("--prompts", prompts);
  app.add_option("--prompt-len", prompt_len);
  app.add_option("--new", n_new);
  app.add_option("--batch", batch);
  app.add_option("--block", block, "generate: the model's block_size (prompt + new tokens must fit)");
  app.add_option("--samples", samples);
  app.add_option("--shots", shots, "exact-match: other samples before each prompt as few-shot examples");
  app.add_option("--rounds", rounds);
  app.add_option("--save", save_path, "write the generate mode's model as a checkpoint");
  CLI11_PARSE(app, argc, argv);
  const bool em = mode == "exact-match";
  auto pick = [](std::int64_t v, std::int64_t d) { return v > 0 ? v : d; };
  n_layer = pick(n_layer, em ? 4 : 6);
  n_head = pick(n_head, em ? 4 : 6);
  n_embd = pick(n_embd, em ? 128 : 384);
  batch = pick(batch, em ? 16 : 8);

  if (mode == "exact-match") {
    // The eval job of the issue: a 4-layer model, 500 prompt/answer samples (the demo's tasks), with
    // --shots other samples in front of each prompt as few-shot examples (block_size 64, or 256 with shots).
    const flowlm::data::ByteTokenizer tok;
    flowlm::data::SyntheticOptions so;
    auto pairs = flowlm::data::synthetic_mixture({"copy", "reverse", "sort", "add"}, samples / 4, 5,
                                                 flowlm::data::Split::heldout, so);
    if (shots > 0) {
      const auto shown = pairs;
      for (std::size_t i = 0; i < pairs.size(); ++i) {
        std::string prefix;
        for (std::int64_t k = 1; k <= shots; ++k) {
          const auto& ex = shown[(i + static_cast<std::size_t>(k) * 37) % shown.size()];
          prefix += ex.prompt + ex.answer + "\n";
        }
        pairs[i].prompt = prefix + pairs[i].prompt;
      }
    }
    const std::int64_t em_block = shots > 0 ? 256 : 64;
    flowlm::data::SampleSet set;
    flowlm::data::build_samples(pairs, tok, em_block, flowlm::data::Overlong::drop, "bench", set);
    auto cfg = flowlm::model::gpt2_config(n_layer, n_head, n_embd, 256, em_block);
    flowlm::model::Transformer m(cfg);
    init(m, 7);
    std::vector<flowlm::index_t> ids, max_new;
    std::int64_t answer_tokens = 0, prompt_tokens = 0;
    for (flowlm::index_t i = 0; i < set.size(); ++i) {
      ids.push_back(i);
      max_new.push_back(set.answer_tokens(i));
      answer_tokens += set.answer_tokens(i);
      prompt_tokens += set.answer_start[i];
    }
    auto count = [&](const std::vector<std::vector<std::int32_t>>& answers) {
      std::int64_t right = 0;
      for (flowlm::index_t i = 0; i < set.size(); ++i) {
        const auto& a = answers[static_cast<std::size_t>(i)];
        right += static_cast<flowlm::index_t>(a.size()) == set.answer_tokens(i) &&
                 std::equal(a.begin(), a.end(), set.sample(i) + set.answer_start[i]);
      }
      return right;
    };
    const auto self = flowlm::comm::Communicator::self();
    // The former eval: the loss pass, then greedy decoding per micro-batch (eval.micro_batch, 16), each
    // token a forward of the whole sequence.
    auto old_eval = [&] {
      std::vector<std::vector<std::int32_t>> all;
      flowlm::train::evaluate_samples(m, set, batch, self);
      for (flowlm::index_t first = 0; first < set.size(); first += batch) {
        const flowlm::index_t n = std::min(batch, set.size() - first);
        const std::vector<flowlm::index_t> part(ids.begin() + first, ids.begin() + first + n),
            part_new(max_new.begin() + first, max_new.begin() + first + n);
        for (auto& a : flowlm::train::greedy_answers(m, set, part, part_new, tok.eot(),
                                                     flowlm::train::Decoding::full_rerun))
          all.push_back(std::move(a));
      }
      return all;
    };
    // The same with the KV cache: the loss pass, then greedy decoding of the same micro-batches.
    auto cached_eval = [&] {
      flowlm::train::evaluate_samples(m, set, batch, self);
      return flowlm::train::greedy_answers(m, set, ids, max_new, tok.eot(), flowlm::train::Decoding::kv_cache,
                                           batch);
    };
    std::vector<double> t_old, t_cache, t_pass;
    std::int64_t right_old = 0, right_cache = 0, right_pass = 0;
    for (int r = 0; r < rounds; ++r) {
      auto t0 = Clock::now();
      const auto a = old_eval();
      t_old.push_back(seconds_since(t0));
      t0 = Clock::now();
      const auto b = cached_eval();
      t_cache.push_back(seconds_since(t0));
      t0 = Clock::now();
      const auto c = flowlm::train::evaluate_samples(m, set, batch, self);
      t_pass.push_back(seconds_since(t0));
      if (a != b) {
        fmt::print(stderr, "bench_generate: the cached and the rerun greedy answers differ\n");
        return 1;
      }
      right_old = count(a);
      right_cache = count(b);
      right_pass = c.correct;
    }
    if (right_old != right_pass || right_cache != right_pass) {
      fmt::print(stderr, "bench_generate: exact-match counts differ: {} {} {}\n", right_old, right_cache,
                 right_pass);
      return 1;
    }
    fmt::print(
        "{{\"mode\": \"exact-match\", \"samples\": {}, \"shots\": {}, \"prompt_tokens\": {}, "
        "\"answer_tokens\": {}, \"params\": {}, \"threads\": {}, \"micro_batch\": {}, \"old_eval_s\": "
        "{:.3f}, "
        "\"kv_cache_eval_s\": {:.3f}, \"one_pass_eval_s\": {:.3f}, \"kv_speedup\": {:.2f}, "
        "\"one_pass_speedup\": {:.2f}, \"correct\": {}}}\n",
        set.size(), shots, prompt_tokens, answer_tokens, m.num_params(),
        flowlm::kernels::backend_concurrency(), batch, median(t_old), median(t_cache), median(t_pass),
        median(t_old) / median(t_cache), median(t_old) / median(t_pass), right_pass);
    return 0;
  }

  auto cfg = flowlm::model::gpt2_config(n_layer, n_head, n_embd, vocab, block);
  if (arch == "llama") {
    cfg.arch = "llama";
    cfg = flowlm::config::with_family_defaults(cfg, {});
    std::int64_t k = n_kv_head > 0 ? n_kv_head : std::max<std::int64_t>(1, (n_head + 1) / 3);
    while (n_head % k != 0) --k;
    cfg.n_kv_head = k;
  }
  flowlm::model::Transformer m(cfg);
  init(m, 3);
  if (!save_path.empty()) save(m, save_path);
  // The prompts bench_generate_torch.py makes: token t of prompt i is (i * 31 + t * 7) % (V - 1) + 1.
  std::vector<std::vector<std::int32_t>> ps(static_cast<std::size_t>(prompts));
  for (std::int64_t i = 0; i < prompts; ++i)
    for (std::int64_t t = 0; t < prompt_len; ++t)
      ps[static_cast<std::size_t>(i)].push_back(
          static_cast<std::int32_t>((i * 31 + t * 7) % (vocab - 1) + 1));
  flowlm::model::GenerateOptions opt;
  opt.max_new_tokens = n_new;
  std::vector<double> times;
  std::vector<std::vector<std::int32_t>> out;
  for (int r = 0; r <= rounds; ++r) {  // round 0 warms up
    const auto t0 = Clock::now();
    out = flowlm::model::generate(m, ps, opt, batch);
    if (r > 0) times.push_back(seconds_since(t0));
  }
  std::int64_t generated = 0;
  for (const auto& o : out) generated += static_cast<std::int64_t>(o.size());
  std::string first;
  for (std::size_t t = 0; t < std::min<std::size_t>(8, out[0].size()); ++t)
    first += (t ? "," : "") + std::to_string(out[0][t]);
  fmt::print(
      "{{\"impl\": \"flowlm\", \"arch\": \"{}\", \"params\": {}, \"vocab\": {}, \"threads\": {}, "
      "\"prompts\": {}, "
      "\"batch\": {}, \"prompt_len\": {}, \"new\": {}, \"seconds\": {:.4f}, \"tokens_per_s\": {:.1f}, "
      "\"first_tokens\": [{}]}}\n",
      arch, m.num_params(), vocab, flowlm::kernels::backend_concurrency(), prompts, batch, prompt_len, n_new,
      median(times), static_cast<double>(generated) / median(times), first);
  return 0;
}
