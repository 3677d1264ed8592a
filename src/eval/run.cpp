#include "eval/run.hpp"

#include <utf8proc.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.hpp"
#include "eval/prompt.hpp"
#include "eval/pyregex.hpp"
#include "model/hf.hpp"

namespace flowlm::eval {

using nlohmann::json;

namespace {

// ---- Python's str semantics on UTF-8 --------------------------------------------------

/// The code point at s[i] and its length in bytes (invalid bytes: U+FFFD, one byte).
std::pair<char32_t, std::size_t> code_point(const std::string& s, std::size_t i) {
  utf8proc_int32_t cp = 0;
  const auto n = utf8proc_iterate(reinterpret_cast<const utf8proc_uint8_t*>(s.data() + i),
                                  static_cast<utf8proc_ssize_t>(s.size() - i), &cp);
  if (n <= 0) return {0xFFFD, 1};
  return {static_cast<char32_t>(cp), static_cast<std::size_t>(n)};
}

/// Python's str.isspace().
bool is_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}

/// Byte offsets [begin, end) of s without leading / trailing whitespace (str.strip's span).
std::pair<std::size_t, std::size_t> strip_span(const std::string& s, bool left, bool right) {
  std::size_t i = 0, begin = s.size(), end = 0;
  bool any = false;
  while (i < s.size()) {
    const auto [c, n] = code_point(s, i);
    if (!is_space(c)) {
      if (!any) begin = i;
      any = true;
      end = i + n;
    }
    i += n;
  }
  if (!any) return {left ? s.size() : 0, right ? 0 : s.size()};
  return {left ? begin : 0, right ? end : s.size()};
}

std::string strip(const std::string& s, bool left = true, bool right = true) {
  const auto [b, e] = strip_span(s, left, right);
  return b < e ? s.substr(b, e - b) : std::string();
}

std::string lower(const std::string& s) {
  std::string out;
  for (std::size_t i = 0; i < s.size();) {
    const auto [c, n] = code_point(s, i);
    utf8proc_uint8_t buf[4];
    const auto len = utf8proc_encode_char(utf8proc_tolower(static_cast<utf8proc_int32_t>(c)), buf);
    out.append(reinterpret_cast<const char*>(buf), static_cast<std::size_t>(len));
    i += n;
  }
  return out;
}

std::string remove_chars(const std::string& s, const char* chars) {
  std::string out;
  for (const char c : s)
    if (!std::strchr(chars, c) || c == '\0') out += c;
  return out;
}

// Python's string.punctuation.
constexpr const char* kPunctuation = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

std::int64_t argmax(const std::vector<double>& v) {
  return std::max_element(v.begin(), v.end()) - v.begin();  // the first maximum, as numpy
}

std::string metric_name(const std::string& metric, const std::string& filter) {
  return filter == "none" ? metric : metric + "," + filter;
}

}  // namespace

std::int64_t count_words(const std::string& text) {
  std::int64_t pieces = 1;
  bool in_space = false;
  for (std::size_t i = 0; i < text.size();) {
    const auto [c, n] = code_point(text, i);
    const bool sp = is_space(c);
    if (sp && !in_space) ++pieces;
    in_space = sp;
    i += n;
  }
  return pieces;
}

std::int64_t count_chars(const std::string& text) {
  std::int64_t n = 0;
  for (std::size_t i = 0; i < text.size(); i += code_point(text, i).second) ++n;
  return n;
}

double exact_match(const std::string& response, const std::string& target, const ExactMatchOptions& opt) {
  std::string p = response, r = target;
  for (const auto& re : opt.regexes_to_ignore) {
    const PyRegex rx(re, "exact_match.regexes_to_ignore");
    p = rx.sub(p);
    r = rx.sub(r);
  }
  if (opt.ignore_case) {
    p = lower(p);
    r = lower(r);
  }
  if (opt.ignore_punctuation) {
    p = remove_chars(p, kPunctuation);
    r = remove_chars(r, kPunctuation);
  }
  if (opt.ignore_numbers) {
    p = remove_chars(p, "0123456789");
    r = remove_chars(r, "0123456789");
  }
  return p == r ? 1.0 : 0.0;
}

std::string apply_filter(const AnswerFilter& f, const std::string& response) {
  const std::string text = f.strip_leading_whitespace ? strip(response, true, false) : response;
  if (f.regex.empty()) return text;
  const PyRegex rx(f.regex, "filter " + f.name);
  const auto matches = rx.findall(text);
  if (matches.empty()) return f.fallback;
  const auto n = static_cast<std::int64_t>(matches.size());
  const std::int64_t at = f.group_select < 0 ? n + f.group_select : f.group_select;
  if (at < 0 || at >= n) return f.fallback;
  const auto& m = matches[static_cast<std::size_t>(at)];
  // Several groups: the first that matched something (lm-eval's [m for m in match if m][0]).
  std::string pick = m.size() == 1 ? m[0] : std::string();
  if (m.size() > 1)
    for (const auto& g : m)
      if (!g.empty()) {
        pick = g;
        break;
      }
  return strip(pick);
}

std::string cut_at_stops(std::string response, const std::vector<std::string>& until) {
  for (const auto& term : until) {
    if (term.empty()) continue;
    const auto at = response.find(term);
    if (at != std::string::npos) response.resize(at);
  }
  return response;
}

TextCodec::TextCodec(const data::Tokenizer& tok, bool add_special, bool add_bos)
    : tok_(tok),
      add_special_(add_special),
      add_bos_(add_bos && !(add_special && !tok.special_prefix().empty())),
      prefix_(tok.bos() ? *tok.bos() : tok.eot()),
      eot_(tok.eot()) {}

Tokens TextCodec::encode_context(const std::string& text) const {
  Tokens t = encode(text);
  if (add_bos_) t.insert(t.begin(), prefix_);
  return t;
}

std::string TextCodec::text(const Tokens& tokens) const {
  std::string out = tok_.decode(tokens, true), clean;
  return data::sanitize_utf8(out, clean) ? clean : out;
}

TokenRequest TextCodec::encode_pair(const std::string& context, const std::string& continuation) const {
  if (context.empty()) return {Tokens{prefix_}, encode(continuation)};
  const std::size_t cut = strip_span(context, false, true).second;
  const std::string ctx = context.substr(0, cut);
  const std::string cont = context.substr(cut) + continuation;
  Tokens whole = encode_context(ctx + cont);
  Tokens c = encode_context(ctx);
  const std::size_t n = std::min(c.size(), whole.size());
  return {std::move(c), Tokens(whole.begin() + static_cast<std::ptrdiff_t>(n), whole.end())};
}

TaskResult run_task(Engine& engine, const TextCodec& codec, const Task& task, const RunOptions& opt) {
  const TaskSpec& s = task.spec;
  TaskResult res;
  res.task = s.name;
  res.kind = s.kind;
  const std::size_t n = opt.limit > 0
                            ? std::min<std::size_t>(task.items.size(), static_cast<std::size_t>(opt.limit))
                            : task.items.size();
  res.items = static_cast<std::int64_t>(n);
  res.num_fewshot = opt.num_fewshot >= 0 ? opt.num_fewshot : s.num_fewshot;
  check_fewshot(task, res.num_fewshot,
                opt.num_fewshot >= 0 ? "eval.num_fewshot" : s.file.string() + ": num_fewshot");
  const std::int64_t seed = opt.fewshot_seed >= 0 ? opt.fewshot_seed : s.fewshot_seed;
  std::vector<std::string> contexts(n);
  for (std::size_t i = 0; i < n; ++i) contexts[i] = build_context(task, i, res.num_fewshot, seed);
  res.records.resize(n);
  for (std::size_t i = 0; i < n; ++i)
    res.records[i] = json{{"doc_id", i}, {"line", task.items[i].line}, {"context", contexts[i]}};
  const index_t L = engine.max_length();
  auto need = [&](const TokenRequest& r, std::size_t i) {
    if (r.continuation.empty())
      fail<DataError>("{}:{}: task {}: the continuation is empty after tokenization", s.data.string(),
                      task.items[i].line, s.name);
  };

  if (s.kind == TaskKind::multiple_choice) {
    std::vector<TokenRequest> reqs;
    for (std::size_t i = 0; i < n; ++i)
      for (const auto& choice : task.items[i].choices) {
        reqs.push_back(codec.encode_pair(contexts[i], s.target_delimiter + choice));
        need(reqs.back(), i);
      }
    const auto lls = engine.loglikelihood(reqs);
    std::vector<double> acc(n), acc_norm(n);
    std::size_t k = 0;
    for (std::size_t i = 0; i < n; ++i) {
      const Item& it = task.items[i];
      std::vector<double> ll, norm;
      std::vector<bool> greedy;
      for (const auto& choice : it.choices) {
        ll.push_back(lls[k].logprob);
        greedy.push_back(lls[k].greedy);
        norm.push_back(lls[k].logprob / static_cast<double>(std::max<std::int64_t>(1, count_chars(choice))));
        ++k;
      }
      const std::int64_t pred = argmax(ll), pred_norm = argmax(norm);
      acc[i] = pred == it.gold ? 1.0 : 0.0;
      acc_norm[i] = pred_norm == it.gold ? 1.0 : 0.0;
      json& r = res.records[i];
      r["loglikelihoods"] = ll;
      r["greedy"] = greedy;
      r["gold"] = it.gold;
      r["pred"] = pred;
      r["pred_norm"] = pred_norm;
      r["acc"] = acc[i];
      r["acc_norm"] = acc_norm[i];
    }
    res.metrics.push_back(mean_metric("acc", acc));
    res.metrics.push_back(mean_metric("acc_norm", acc_norm));
  } else if (s.kind == TaskKind::generate) {
    const index_t room = L - s.max_new_tokens;
    if (room < 1)
      fail<ConfigError>(
          "{}: generation.max_new_tokens = {} leaves no room for a prompt in the model's block_size {}",
          s.file.string(), s.max_new_tokens, L);
    std::vector<Tokens> prompts(n);
    for (std::size_t i = 0; i < n; ++i) {
      Tokens t = codec.encode_context(contexts[i]);
      if (static_cast<index_t>(t.size()) > room)
        t.erase(t.begin(), t.end() - room);  // keep the tail, as lm-eval
      if (t.empty()) t.push_back(codec.prefix());
      prompts[i] = std::move(t);
    }
    std::vector<std::string> until = s.until;
    until.push_back(codec.tokenizer().decode({codec.eot()}, false));  // lm-eval adds the EOS text
    model::GenerateOptions g;
    g.max_new_tokens = s.max_new_tokens;
    g.eot = codec.eot();
    g.stop = [&](std::size_t, const Tokens& out) {
      const std::string text = codec.text(out);
      return std::any_of(until.begin(), until.end(), [&](const std::string& t) {
        return !t.empty() && text.find(t) != std::string::npos;
      });
    };
    const auto outs = engine.generate(prompts, g);
    std::vector<std::vector<double>> em(s.filters.size(), std::vector<double>(n));
    for (std::size_t i = 0; i < n; ++i) {
      const std::string response = cut_at_stops(codec.text(outs[i]), until);
      json& r = res.records[i];
      r["response"] = response;
      r["generated_tokens"] = outs[i].size();
      r["target"] = task.items[i].target;
      json filtered = json::object(), scores = json::object();
      for (std::size_t f = 0; f < s.filters.size(); ++f) {
        const std::string answer = apply_filter(s.filters[f], response);
        em[f][i] = exact_match(answer, task.items[i].target, s.exact_match);
        filtered[s.filters[f].name] = answer;
        scores[s.filters[f].name] = em[f][i];
      }
      r["filtered"] = filtered;
      r["exact_match"] = scores;
    }
    for (std::size_t f = 0; f < s.filters.size(); ++f)
      res.metrics.push_back(mean_metric(metric_name("exact_match", s.filters[f].name), em[f]));
  } else {
    std::vector<TokenRequest> reqs;
    std::vector<std::size_t> doc;
    std::vector<std::size_t> tokens(n);
    for (std::size_t i = 0; i < n; ++i) {
      const Tokens t = codec.encode(task.items[i].text);
      tokens[i] = t.size();
      for (auto& w : rolling_windows(t, codec.prefix(), L)) {
        reqs.push_back(std::move(w));
        doc.push_back(i);
      }
    }
    const auto lls = engine.loglikelihood(reqs);
    std::vector<double> nll(n, 0.0), words(n), bytes(n);
    for (std::size_t k = 0; k < reqs.size(); ++k) nll[doc[k]] -= lls[k].logprob;
    for (std::size_t i = 0; i < n; ++i) {
      words[i] = static_cast<double>(count_words(task.items[i].text));
      bytes[i] = static_cast<double>(task.items[i].text.size());
      json& r = res.records[i];
      r["loglikelihood"] = -nll[i];
      r["tokens"] = tokens[i];
      r["words"] = words[i];
      r["bytes"] = bytes[i];
    }
    res.metrics.push_back(ratio_metric("word_perplexity", nll, words, RatioForm::exp));
    res.metrics.push_back(ratio_metric("byte_perplexity", nll, bytes, RatioForm::exp));
    res.metrics.push_back(ratio_metric("bits_per_byte", nll, bytes, RatioForm::per_ln2));
  }
  return res;
}

std::unique_ptr<data::Tokenizer> tokenizer_for(const std::string& spec,
                                               const std::filesystem::path& checkpoint, index_t model_vocab,
                                               const std::string& key) {
  std::unique_ptr<data::Tokenizer> tok;
  if (!spec.empty()) {
    tok = data::make_tokenizer(spec);
  } else if (const auto recorded = model::checkpoint_tokenizer(checkpoint); !recorded.empty()) {
    tok = data::make_tokenizer(recorded.string());
  } else if (model_vocab == 256) {
    tok = data::make_tokenizer("byte");
  } else {
    fail<ConfigError>(
        "{} is empty and {} records no tokenizer (its vocabulary has {} tokens, so it is not a byte model): "
        "set {} "
        "to the tokenizer file or model directory it was trained with",
        key, checkpoint.string(), model_vocab, key);
  }
  if (tok->vocab_size() > model_vocab)
    fail<ConfigError>("{}: tokenizer {} has {} tokens but the model {} embeds only {}", key, tok->name(),
                      tok->vocab_size(), checkpoint.string(), model_vocab);
  return tok;
}

}  // namespace flowlm::eval
