// flowlm's tokenizers for the Python comparison tests (check_tokenizers.py):
//   tok_tool info TOK                        JSON: kind, vocab_size, bos, eos, pad, prefix, suffix
//   tok_tool encode TOK IN OUT [--special]   IN: records (uint32 LE length + bytes); OUT: a line of ids each
//   tok_tool decode TOK IN OUT [--skip-special]   IN: a line of ids each; OUT: records
//   tok_tool pretokenize TOK IN OUT          OUT: a JSON list of the pieces per record
// Records carry raw bytes, so invalid UTF-8 reaches the tokenizer as it is.
#include <nlohmann/json.hpp>

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "data/tokenizer.hpp"

namespace {

using flowlm::data::TokenId;

std::vector<std::string> read_records(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw flowlm::IoError(path + ": cannot open");
  std::vector<std::string> out;
  for (;;) {
    unsigned char len[4];
    if (!in.read(reinterpret_cast<char*>(len), 4)) break;
    const std::uint32_t n = len[0] | (len[1] << 8) | (len[2] << 16) | (std::uint32_t(len[3]) << 24);
    std::string s(n, '\0');
    if (n > 0 && !in.read(s.data(), n)) throw flowlm::IoError(path + ": truncated record");
    out.push_back(std::move(s));
  }
  return out;
}

void write_record(std::ofstream& out, const std::string& s) {
  const auto n = static_cast<std::uint32_t>(s.size());
  const unsigned char len[4] = {static_cast<unsigned char>(n), static_cast<unsigned char>(n >> 8),
                                static_cast<unsigned char>(n >> 16), static_cast<unsigned char>(n >> 24)};
  out.write(reinterpret_cast<const char*>(len), 4);
  out.write(s.data(), static_cast<std::streamsize>(s.size()));
}

int run(const std::vector<std::string>& args) {
  if (args.size() < 2) {
    std::cerr << "usage: tok_tool info|encode|decode TOK [IN OUT] [--special|--skip-special]\n";
    return 2;
  }
  const auto tok = flowlm::data::make_tokenizer(args[1]);
  const bool flag = args.size() > 4 && (args[4] == "--special" || args[4] == "--skip-special");
  if (args[0] == "info") {
    const auto opt = [](std::optional<TokenId> id) {
      return id ? nlohmann::json(*id) : nlohmann::json(nullptr);
    };
    std::cout << nlohmann::json{{"kind", tok->kind()},
                                {"vocab_size", tok->vocab_size()},
                                {"bos", opt(tok->bos())},
                                {"eos", opt(tok->eos())},
                                {"pad", opt(tok->pad())},
                                {"prefix", tok->special_prefix()},
                                {"suffix", tok->special_suffix()},
                                {"describe", tok->describe()}}
                     .dump()
              << "\n";
    return 0;
  }
  if (args.size() < 4) throw flowlm::UsageError("encode/decode need IN and OUT");
  if (args[0] == "encode") {
    std::ofstream out(args[3]);
    for (const auto& r : read_records(args[2])) {
      const auto ids = tok->encode(r, flag);
      for (std::size_t i = 0; i < ids.size(); ++i) out << (i ? " " : "") << ids[i];
      out << "\n";
    }
    return out ? 0 : 1;
  }
  if (args[0] == "decode") {
    std::ifstream in(args[2]);
    std::ofstream out(args[3], std::ios::binary);
    std::string line;
    while (std::getline(in, line)) {
      std::istringstream ss(line);
      std::vector<TokenId> ids;
      for (TokenId id; ss >> id;) ids.push_back(id);
      write_record(out, tok->decode(ids, flag));
    }
    return out ? 0 : 1;
  }
  if (args[0] == "pretokenize") {
    std::ofstream out(args[3]);
    for (const auto& r : read_records(args[2]))
      out << nlohmann::json(tok->pre_tokenize(r))
                 .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)
          << "\n";
    return out ? 0 : 1;
  }
  throw flowlm::UsageError("unknown command " + args[0]);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(std::vector<std::string>(argv + 1, argv + argc));
  } catch (const std::exception& e) {
    std::cerr << "tok_tool: " << e.what() << "\n";
    return 1;
  }
}
