// `flowlm generate job.toml`: completions of prompts (generate.prompts and generate.prompts_file)
// by a checkpoint, with a KV cache, greedy or sampled; printed, and written as JSONL when
// generate.output is set. Prompts are spread over the ranks in fixed batches and sampled from
// per-prompt streams, so the completions do not depend on the rank count.
#include <nlohmann/json.hpp>

#include <chrono>
#include <filesystem>
#include <fstream>

#include "core/error.hpp"
#include "core/log.hpp"
#include "data/prepare.hpp"
#include "eval/engine.hpp"
#include "eval/run.hpp"
#include "model/checkpoint.hpp"
#include "stages/stage.hpp"

namespace flowlm::stages {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// A text file holds one prompt per line ("\n" written as a backslash and n stands for a newline);
// a .jsonl file one object per line with the prompt in `field`.
std::vector<std::string> read_prompts(const fs::path& file, const std::string& field) {
  std::ifstream in(file, std::ios::binary);
  if (!in) fail<IoError>("generate.prompts_file: {} cannot be opened", file.string());
  const bool jsonl = file.extension() == ".jsonl";
  std::vector<std::string> out;
  std::string line;
  for (std::int64_t n = 1; std::getline(in, line); ++n) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    if (jsonl) {
      const json j = json::parse(line, nullptr, false);
      if (j.is_discarded() || !j.is_object())
        fail<DataError>("{}:{}: not a JSON object (generate.prompts_file)", file.string(), n);
      const auto f = j.find(field);
      if (f == j.end() || !f->is_string())
        fail<DataError>("{}:{}: no string field \"{}\" (generate.prompt_field)", file.string(), n, field);
      out.push_back(f->get<std::string>());
      continue;
    }
    std::string p;
    for (std::size_t i = 0; i < line.size(); ++i) {
      if (line[i] == '\\' && i + 1 < line.size() && line[i + 1] == 'n') {
        p += '\n';
        ++i;
      } else {
        p += line[i];
      }
    }
    out.push_back(std::move(p));
  }
  return out;
}

}  // namespace

void run_generate(const StageContext& ctx) {
  const auto& g = ctx.job.generate;
  config::require_nonempty(g.checkpoint, "generate.checkpoint", "generate");
  std::vector<std::string> prompts = g.prompts;
  if (!g.prompts_file.empty()) {
    const auto more = read_prompts(g.prompts_file, g.prompt_field);
    prompts.insert(prompts.end(), more.begin(), more.end());
  }
  if (prompts.empty())
    fail<ConfigError>(
        "generate.prompts and generate.prompts_file give no prompt; the generate stage needs one");
  if (!fs::exists(g.checkpoint)) fail<IoError>("generate.checkpoint: {} does not exist", g.checkpoint);
  auto gpt = model::load_model(g.checkpoint, ctx.job.run.backend);
  const auto& cfg = gpt->config();
  const auto tok = eval::tokenizer_for(g.tokenizer, g.checkpoint, cfg.vocab_size, "generate.tokenizer");
  std::string tmpl;
  try {
    tmpl = data::prompt_template(g.prompt_template);
  } catch (const ConfigError& e) {
    fail<ConfigError>("generate.template: {}", e.what());
  }
  const eval::TextCodec codec(*tok, true, g.add_bos);
  // As transformers' tokenizer(prompt) does: the tokenizer's own special tokens (Llama's BOS) included.
  std::vector<eval::Tokens> ids;
  std::int64_t cut = 0;
  const index_t room =
      cfg.pos == "learned" ? cfg.block_size - g.max_new_tokens + 1 : std::numeric_limits<index_t>::max();
  if (room < 1)
    fail<ConfigError>(
        "generate.max_new_tokens = {} leaves no room for a prompt in block_size {} (learned positions)",
        g.max_new_tokens, cfg.block_size);
  for (const auto& p : prompts) {
    eval::Tokens t = codec.encode_context(data::apply_prompt_template(tmpl, p));
    if (t.empty()) t.push_back(tok->bos() ? *tok->bos() : tok->eot());
    if (static_cast<index_t>(t.size()) > room) {
      t.erase(t.begin(), t.end() - room);
      ++cut;
    }
    ids.push_back(std::move(t));
  }
  if (cut > 0)
    log::warn("generate: {} prompts lost their beginning to fit block_size {} with max_new_tokens {}", cut,
              cfg.block_size, g.max_new_tokens);
  model::GenerateOptions opt;
  opt.max_new_tokens = g.max_new_tokens;
  opt.eot = tok->eot();
  opt.sampling = model::Sampling{g.temperature, g.top_k, g.top_p, static_cast<std::uint64_t>(g.seed)};
  opt.stop = [&](std::size_t, const eval::Tokens& out) {
    if (g.until.empty()) return false;
    const std::string text = tok->decode(out, true);
    for (const auto& u : g.until)
      if (!u.empty() && text.find(u) != std::string::npos) return true;
    return false;
  };
  log::info("generate: {} prompts, {} ({}, tokenizer {}), max_new_tokens {}, {}", prompts.size(),
            g.checkpoint, cfg.arch, tok->name(), g.max_new_tokens,
            g.temperature > 0 ? fmt::format("temperature {}, top_k {}, top_p {}, seed {}", g.temperature,
                                            g.top_k, g.top_p, g.seed)
                              : std::string("greedy"));
  eval::Engine engine(*gpt, g.batch, ctx.world);
  const auto t0 = std::chrono::steady_clock::now();
  const auto outs = engine.generate(ids, opt);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::int64_t generated = 0;
  std::ofstream file;
  if (ctx.world.is_root() && !g.output.empty()) {
    if (fs::path(g.output).has_parent_path()) fs::create_directories(fs::path(g.output).parent_path());
    file.open(g.output, std::ios::trunc);
    if (!file) fail<IoError>("generate.output: {} cannot be written", g.output);
  }
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    const std::string completion = eval::cut_at_stops(codec.text(outs[i]), g.until);
    generated += static_cast<std::int64_t>(outs[i].size());
    log::info("[{}] {}", i, prompts[i]);
    log::info("  => {}", completion);
    if (file)
      file << json{{"prompt", prompts[i]}, {"completion", completion}, {"tokens", outs[i]}}.dump() << '\n';
  }
  log::info("generate: {} tokens in {:.2f} s ({:.1f} tokens/s over {} ranks){}", generated, secs,
            secs > 0 ? static_cast<double>(generated) / secs : 0.0, ctx.world.size(),
            g.output.empty() ? std::string() : fmt::format("; wrote {}", g.output));
}

}  // namespace flowlm::stages
