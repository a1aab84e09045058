#include "citycard/reports/trace.h"

#include <openssl/evp.h>

namespace citycard::reports {

struct TraceWriter::Digest {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  Digest() { EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr); }
  ~Digest() { EVP_MD_CTX_free(ctx); }
};

TraceWriter::TraceWriter() : digest_(std::make_unique<Digest>()) {}
TraceWriter::~TraceWriter() { (void)close(); }

Result<std::unique_ptr<TraceWriter>> TraceWriter::open(const std::string& path) {
  std::unique_ptr<TraceWriter> w(new TraceWriter());
  if (!path.empty()) {
    w->out_.open(path, std::ios::binary | std::ios::trunc);
    if (!w->out_) return Result<std::unique_ptr<TraceWriter>>(Errc::kIo, "cannot write " + path);
    w->writing_ = true;
  }
  return w;
}

void TraceWriter::event(std::int64_t t_us, std::string_view type, Json fields) {
  if (!fields.is_object()) fields = Json::object();
  fields["t_us"] = t_us;
  fields["ev"] = type;
  std::string line = fields.dump();
  line.push_back('\n');
  EVP_DigestUpdate(digest_->ctx, line.data(), line.size());
  if (writing_) out_.write(line.data(), static_cast<std::streamsize>(line.size()));
  ++events_;
}

std::string TraceWriter::digest_hex() const {
  // Finalise a copy so the running digest can go on.
  EVP_MD_CTX* copy = EVP_MD_CTX_new();
  EVP_MD_CTX_copy_ex(copy, digest_->ctx);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_DigestFinal_ex(copy, md, &n);
  EVP_MD_CTX_free(copy);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < n; ++i) {
    out.push_back(kHex[md[i] >> 4]);
    out.push_back(kHex[md[i] & 15]);
  }
  return out;
}

Status TraceWriter::close() {
  if (!writing_) return Status::ok();
  writing_ = false;
  out_.flush();
  const bool good = static_cast<bool>(out_);
  out_.close();
  return good ? Status::ok() : Status(Errc::kIo, "trace write failed");
}

}  // namespace citycard::reports
