// Recursive-descent parser for the generic text form.
#include "ir/parser.h"

#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <unordered_map>

#include "ir/op_registry.h"

namespace moegraph {
namespace {

enum class Tok { kEnd, kPercent, kAt, kIdent, kInt, kFloat, kString, kPunct, kBang };

struct Token {
  Tok kind = Tok::kEnd;
  std::string text;  // identifier / name / string contents / punctuation
  int64_t int_value = 0;
  double float_value = 0;
  int line = 1, col = 1;
};

bool IsIdentChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-' ||
         c == '$';
}

class Parser {
 public:
  Parser(std::string_view text, std::string_view source) : text_(text), source_(source) {}

  StatusOr<Graph> Parse() {
    MG_RETURN_IF_ERROR(Advance());
    MG_RETURN_IF_ERROR(ExpectIdent("graph"));
    if (tok_.kind != Tok::kAt) return Error("expected '@name' after 'graph'");
    Graph graph(tok_.text);
    MG_RETURN_IF_ERROR(Advance());
    MG_RETURN_IF_ERROR(ExpectPunct("("));
    if (!IsPunct(")")) {
      while (true) {
        if (tok_.kind != Tok::kPercent) return Error("expected an input '%name'");
        std::string name = tok_.text;
        MG_RETURN_IF_ERROR(CheckFresh(name));
        MG_RETURN_IF_ERROR(Advance());
        MG_RETURN_IF_ERROR(ExpectPunct(":"));
        MG_ASSIGN_OR_RETURN(Type type, ParseType());
        ValueId id = graph.AddInput(name, type);
        graph.SetValueName(id, name);
        names_[name] = id;
        if (IsPunct(")")) break;
        MG_RETURN_IF_ERROR(ExpectPunct(","));
      }
    }
    MG_RETURN_IF_ERROR(ExpectPunct(")"));
    if (tok_.kind == Tok::kIdent && tok_.text == "attributes") {
      MG_RETURN_IF_ERROR(Advance());
      MG_ASSIGN_OR_RETURN(graph.mutable_attrs(), ParseAttrs());
    }
    MG_RETURN_IF_ERROR(ExpectPunct("{"));
    while (!(tok_.kind == Tok::kIdent && tok_.text == "return")) {
      MG_RETURN_IF_ERROR(ParseOp(graph));
    }
    MG_RETURN_IF_ERROR(Advance());
    std::vector<ValueId> outputs;
    while (tok_.kind == Tok::kPercent) {
      MG_ASSIGN_OR_RETURN(ValueId id, Use());
      outputs.push_back(id);
      if (!IsPunct(",")) break;
      MG_RETURN_IF_ERROR(Advance());
    }
    graph.SetOutputs(outputs);
    MG_RETURN_IF_ERROR(ExpectPunct("}"));
    if (tok_.kind != Tok::kEnd) return Error("expected the end of input after the graph");
    return graph;
  }

 private:
  Status ParseOp(Graph& graph) {
    std::vector<std::string> result_names;
    if (tok_.kind == Tok::kPercent) {
      while (true) {
        if (tok_.kind != Tok::kPercent) return Error("expected a result '%name'");
        MG_RETURN_IF_ERROR(CheckFresh(tok_.text));
        for (const std::string& seen : result_names) {
          if (seen == tok_.text) return Error("result %" + tok_.text + " is named twice");
        }
        result_names.push_back(tok_.text);
        MG_RETURN_IF_ERROR(Advance());
        if (IsPunct("=")) break;
        MG_RETURN_IF_ERROR(ExpectPunct(","));
      }
      MG_RETURN_IF_ERROR(ExpectPunct("="));
    }
    if (tok_.kind != Tok::kIdent) return Error("expected an op name");
    const OpDef* def = LookupOp(tok_.text);
    if (!def) return Error("unknown op '" + tok_.text + "'");
    MG_RETURN_IF_ERROR(Advance());
    MG_RETURN_IF_ERROR(ExpectPunct("("));
    std::vector<ValueId> operands;
    if (!IsPunct(")")) {
      while (true) {
        MG_ASSIGN_OR_RETURN(ValueId id, Use());
        operands.push_back(id);
        if (IsPunct(")")) break;
        MG_RETURN_IF_ERROR(ExpectPunct(","));
      }
    }
    MG_RETURN_IF_ERROR(ExpectPunct(")"));
    AttrMap attrs;
    if (IsPunct("{")) {
      MG_ASSIGN_OR_RETURN(attrs, ParseAttrs());
    }
    std::vector<Type> types;
    if (!result_names.empty()) {
      MG_RETURN_IF_ERROR(ExpectPunct(":"));
      while (true) {
        MG_ASSIGN_OR_RETURN(Type type, ParseType());
        types.push_back(std::move(type));
        if (!IsPunct(",")) break;
        MG_RETURN_IF_ERROR(Advance());
      }
      if (types.size() != result_names.size()) {
        return Error("'" + def->name + "' names " + std::to_string(result_names.size()) +
                     " results but declares " + std::to_string(types.size()) + " types");
      }
    }
    int32_t index = graph.AddOp(def, std::move(operands), std::move(attrs), types);
    const Op& op = graph.ops()[index];
    for (size_t i = 0; i < result_names.size(); ++i) {
      graph.SetValueName(op.results[i], result_names[i]);
      names_[result_names[i]] = op.results[i];
    }
    return Status::Ok();
  }

  StatusOr<AttrMap> ParseAttrs() {
    AttrMap attrs;
    MG_RETURN_IF_ERROR(ExpectPunct("{"));
    if (IsPunct("}")) {
      MG_RETURN_IF_ERROR(Advance());
      return attrs;
    }
    while (true) {
      if (tok_.kind != Tok::kIdent) return Error("expected an attribute name");
      std::string key = tok_.text;
      if (attrs.count(key)) return Error("attribute '" + key + "' given twice");
      MG_RETURN_IF_ERROR(Advance());
      MG_RETURN_IF_ERROR(ExpectPunct("="));
      MG_ASSIGN_OR_RETURN(attrs[key], ParseAttrValue());
      if (IsPunct("}")) break;
      MG_RETURN_IF_ERROR(ExpectPunct(","));
    }
    MG_RETURN_IF_ERROR(ExpectPunct("}"));
    return attrs;
  }

  StatusOr<Attribute> ParseAttrValue() {
    Token t = tok_;
    if (t.kind == Tok::kInt || t.kind == Tok::kFloat || t.kind == Tok::kString) {
      MG_RETURN_IF_ERROR(Advance());
      if (t.kind == Tok::kInt) return Attribute(t.int_value);
      if (t.kind == Tok::kFloat) return Attribute(t.float_value);
      return Attribute(t.text);
    }
    if (IsPunct("[")) {
      MG_RETURN_IF_ERROR(Advance());
      std::vector<int64_t> list;
      while (!IsPunct("]")) {
        if (tok_.kind != Tok::kInt) return Error("expected an integer in the list");
        list.push_back(tok_.int_value);
        MG_RETURN_IF_ERROR(Advance());
        if (IsPunct("]")) break;
        MG_RETURN_IF_ERROR(ExpectPunct(","));
      }
      MG_RETURN_IF_ERROR(Advance());
      return Attribute(std::move(list));
    }
    return Error("expected an attribute value (integer, float, string or [integers])");
  }

  StatusOr<Type> ParseType() {
    if (tok_.kind == Tok::kBang) {
      if (tok_.text != "forward_meta") return Error("unknown type '!" + tok_.text + "'");
      MG_RETURN_IF_ERROR(Advance());
      return Type::ForwardMeta();
    }
    MG_RETURN_IF_ERROR(ExpectIdent("tensor"));
    MG_RETURN_IF_ERROR(ExpectPunct("<"));
    std::vector<Dim> dims;
    while (true) {
      if (tok_.kind == Tok::kInt) {
        if (tok_.int_value < 0) return Error("a dim must be >= 0");
        dims.push_back(Dim::Static(tok_.int_value));
      } else if (tok_.kind == Tok::kIdent) {
        if (auto dtype = ParseDType(tok_.text); dtype && !PeekIsX()) {
          MG_RETURN_IF_ERROR(Advance());
          MG_RETURN_IF_ERROR(ExpectPunct(">"));
          return Type::Tensor(*dtype, std::move(dims));
        }
        dims.push_back(Dim::Symbol(tok_.text));
      } else {
        return Error("expected a dim or an element type in tensor<...>");
      }
      MG_RETURN_IF_ERROR(Advance());
      if (!(tok_.kind == Tok::kIdent && tok_.text == "x")) {
        return Error("expected 'x' between the dims of tensor<...>");
      }
      MG_RETURN_IF_ERROR(Advance());
    }
  }

  // True when the token after the current one is the dim separator 'x'.
  bool PeekIsX() {
    size_t save_pos = pos_;
    int save_line = line_, save_col = col_;
    Token save = tok_;
    bool is_x = Advance().ok() && tok_.kind == Tok::kIdent && tok_.text == "x";
    pos_ = save_pos;
    line_ = save_line;
    col_ = save_col;
    tok_ = save;
    return is_x;
  }

  StatusOr<ValueId> Use() {
    if (tok_.kind != Tok::kPercent) return Error("expected an operand '%name'");
    auto it = names_.find(tok_.text);
    if (it == names_.end()) return Error("use of undefined value %" + tok_.text);
    MG_RETURN_IF_ERROR(Advance());
    return it->second;
  }

  Status CheckFresh(const std::string& name) {
    if (names_.count(name)) return Error("value %" + name + " is defined twice");
    return Status::Ok();
  }

  bool IsPunct(const char* p) const { return tok_.kind == Tok::kPunct && tok_.text == p; }
  Status ExpectPunct(const char* p) {
    if (!IsPunct(p)) return Error(std::string("expected '") + p + "'");
    return Advance();
  }
  Status ExpectIdent(const char* word) {
    if (tok_.kind != Tok::kIdent || tok_.text != word) {
      return Error(std::string("expected '") + word + "'");
    }
    return Advance();
  }

  Status Error(const std::string& what) const {
    const char* sigil = tok_.kind == Tok::kPercent ? "%"
                        : tok_.kind == Tok::kAt    ? "@"
                        : tok_.kind == Tok::kBang  ? "!"
                                                   : "";
    std::string found = tok_.kind == Tok::kEnd ? "end of input" : "'" + (sigil + tok_.text) + "'";
    return InvalidArgument(std::string(source_) + ":" + std::to_string(tok_.line) + ":" +
                           std::to_string(tok_.col) + ": " + what + ", found " + found);
  }

  char Peek(size_t ahead = 0) const {
    return pos_ + ahead < text_.size() ? text_[pos_ + ahead] : '\0';
  }
  void Bump() {
    if (text_[pos_] == '\n') {
      ++line_;
      col_ = 1;
    } else {
      ++col_;
    }
    ++pos_;
  }

  // Lexes the next token into tok_.
  Status Advance() {
    while (pos_ < text_.size()) {
      char c = Peek();
      if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
        Bump();
      } else if (c == '/' && Peek(1) == '/') {
        while (pos_ < text_.size() && Peek() != '\n')
          Bump();
      } else {
        break;
      }
    }
    tok_ = Token{};
    tok_.line = line_;
    tok_.col = col_;
    if (pos_ >= text_.size()) return Status::Ok();
    char c = Peek();
    if (c == '%' || c == '@' || c == '!') {
      tok_.kind = c == '%' ? Tok::kPercent : c == '@' ? Tok::kAt : Tok::kBang;
      Bump();
      while (pos_ < text_.size() && IsIdentChar(Peek())) {
        tok_.text += Peek();
        Bump();
      }
      if (tok_.text.empty()) {
        tok_.text = std::string(1, c);
        return Error("expected a name after '" + std::string(1, c) + "'");
      }
      return Status::Ok();
    }
    if (c == '"') return LexString();
    if (std::isdigit(static_cast<unsigned char>(c)) || c == '-' || c == '+') return LexNumber();
    if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
      while (pos_ < text_.size() && IsIdentChar(Peek())) {
        tok_.text += Peek();
        Bump();
      }
      tok_.kind = Tok::kIdent;
      if (tok_.text == "inf" || tok_.text == "nan") {
        tok_.kind = Tok::kFloat;
        tok_.float_value = tok_.text == "inf" ? INFINITY : NAN;
      }
      return Status::Ok();
    }
    if (std::string_view("(){}[]<>,:=").find(c) != std::string_view::npos) {
      tok_.kind = Tok::kPunct;
      tok_.text = std::string(1, c);
      Bump();
      return Status::Ok();
    }
    tok_.text = std::string(1, c);
    return Error("unexpected character");
  }

  Status LexString() {
    Bump();  // opening quote
    while (true) {
      if (pos_ >= text_.size() || Peek() == '\n') return Error("unterminated string");
      char c = Peek();
      Bump();
      if (c == '"') break;
      if (c != '\\') {
        tok_.text += c;
        continue;
      }
      if (pos_ >= text_.size()) return Error("unterminated string");
      char e = Peek();
      Bump();
      if (e == 'n') {
        tok_.text += '\n';
      } else if (e == '"' || e == '\\') {
        tok_.text += e;
      } else if (e == 'x' && std::isxdigit(static_cast<unsigned char>(Peek())) &&
                 std::isxdigit(static_cast<unsigned char>(Peek(1)))) {
        tok_.text += static_cast<char>(std::stoi(std::string(text_.substr(pos_, 2)), nullptr, 16));
        Bump();
        Bump();
      } else {
        return Error("bad escape in string");
      }
    }
    tok_.kind = Tok::kString;
    return Status::Ok();
  }

  Status LexNumber() {
    size_t start = pos_;
    if (Peek() == '-' || Peek() == '+') Bump();
    bool is_float = false;
    if (std::isalpha(static_cast<unsigned char>(Peek()))) {  // -inf, -nan
      std::string word;
      while (std::isalpha(static_cast<unsigned char>(Peek()))) {
        word += Peek();
        Bump();
      }
      if (word != "inf" && word != "nan") return Error("bad number");
      tok_.kind = Tok::kFloat;
      tok_.float_value = (text_[start] == '-' ? -1 : 1) * (word == "inf" ? INFINITY : NAN);
      tok_.text = std::string(text_.substr(start, pos_ - start));
      return Status::Ok();
    }
    while (pos_ < text_.size()) {
      char c = Peek();
      if (std::isdigit(static_cast<unsigned char>(c))) {
        Bump();
      } else if (c == '.' || c == 'e' || c == 'E') {
        is_float = true;
        Bump();
        if ((c == 'e' || c == 'E') && (Peek() == '-' || Peek() == '+')) Bump();
      } else {
        break;
      }
    }
    tok_.text = std::string(text_.substr(start, pos_ - start));
    errno = 0;
    char* end = nullptr;
    if (is_float) {
      tok_.kind = Tok::kFloat;
      tok_.float_value = std::strtod(tok_.text.c_str(), &end);
    } else {
      tok_.kind = Tok::kInt;
      tok_.int_value = std::strtoll(tok_.text.c_str(), &end, 10);
    }
    if (errno == ERANGE || end != tok_.text.c_str() + tok_.text.size()) {
      return Error("bad number");
    }
    return Status::Ok();
  }

  std::string_view text_;
  std::string_view source_;
  size_t pos_ = 0;
  int line_ = 1, col_ = 1;
  Token tok_;
  std::unordered_map<std::string, ValueId> names_;
};

}  // namespace

StatusOr<Graph> ParseGraph(std::string_view text, std::string_view source_name) {
  return Parser(text, source_name).Parse();
}

}  // namespace moegraph
