// The promises a loaded tokenizer keeps, checked by the tokenizer fuzz targets: every id that
// encode() gives is in [0, vocab_size()) and decodes; bos/eos/pad and the special prefix and
// suffix are tokens of the vocabulary; describe() works.
#pragma once

#include <fmt/format.h>

#include <string>
#include <string_view>
#include <vector>

#include "data/tokenizer.hpp"
#include "fuzz.hpp"

namespace flowlm::fuzz {

inline void check_id(const data::Tokenizer& tok, data::TokenId id, const char* what) {
  FLOWLM_FUZZ_CHECK(id >= 0 && id < tok.vocab_size(),
                    fmt::format("{} id {} of vocab_size {}", what, id, tok.vocab_size()));
  try {
    (void)tok.token(id);
  } catch (const Error& e) {
    violated(__FILE__, __LINE__, "token(id) of a tokenizer's own id",
             fmt::format("{} {}: {}", what, id, e.what()));
  }
}

inline void check_tokenizer(const data::Tokenizer& tok, const std::vector<std::string_view>& texts) {
  for (const auto& id : {tok.bos(), tok.eos(), tok.pad()})
    if (id) check_id(tok, *id, "special token");
  for (const auto id : tok.special_prefix()) check_id(tok, id, "special_prefix");
  for (const auto id : tok.special_suffix()) check_id(tok, id, "special_suffix");
  (void)tok.describe();
  for (const auto text : texts) {
    for (const bool add_special : {false, true}) {
      std::vector<data::TokenId> ids;
      try {
        ids = tok.encode(text, add_special);
      } catch (const DataError&) {
        continue;  // text the vocabulary cannot represent (no unk, no byte fallback)
      }
      for (const auto id : ids) check_id(tok, id, "encoded");
      try {
        (void)tok.decode(ids, false);
        (void)tok.decode(ids, true);
      } catch (const Error& e) {
        violated(__FILE__, __LINE__, "decode(encode(text))", e.what());
      }
    }
    (void)tok.pre_tokenize(text);
  }
}

/// \brief Texts every tokenizer target encodes, besides the input's own.
inline std::vector<std::string_view> sample_texts() {
  return {"",
          " ",
          "Hello world! It's 2024.",
          "  two  spaces\n\nnew\tlines ",
          "caf\xC3\xA9 na\xC3\xAFve \xE6\x97\xA5\xE6\x9C\xAC \xF0\x9F\x98\x80",
          "<|endoftext|><s></s>x<unk>",
          "bad utf-8 \xFF\xC3( end",
          "1234567 3.14 x=y+z"};
}

}  // namespace flowlm::fuzz
