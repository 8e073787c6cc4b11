#include "libs/tsa/authority.h"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/pkcs7.h>
#include <openssl/ts.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "absl/strings/str_cat.h"

namespace anchord::tsa {
namespace {

std::string Err(absl::string_view what) {
  unsigned long e = ERR_get_error();
  char buf[256] = "unknown";
  if (e != 0) ERR_error_string_n(e, buf, sizeof(buf));
  ERR_clear_error();
  return absl::StrCat("tsa authority: ", what, ": ", buf);
}

struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct KeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using X509Ptr = std::unique_ptr<X509, X509Free>;
using KeyPtr = std::unique_ptr<EVP_PKEY, KeyFree>;

bool AddExt(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  if (ext == nullptr) return false;
  bool ok = X509_add_ext(cert, ext, -1) == 1;
  X509_EXTENSION_free(ext);
  return ok;
}

X509Ptr MakeCert(const std::string& cn, long serial, EVP_PKEY* key, X509* issuer,
                 EVP_PKEY* issuer_key, absl::Time not_before, absl::Time not_after, bool ca,
                 const char* eku) {
  X509Ptr cert(X509_new());
  if (!cert) return nullptr;
  X509_set_version(cert.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), serial);
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("anchord sandbox"), -1, -1, 0);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509_set_issuer_name(cert.get(), issuer != nullptr ? X509_get_subject_name(issuer) : name);
  ASN1_TIME_set(X509_getm_notBefore(cert.get()), absl::ToTimeT(not_before));
  ASN1_TIME_set(X509_getm_notAfter(cert.get()), absl::ToTimeT(not_after));
  X509_set_pubkey(cert.get(), key);
  X509* iss = issuer != nullptr ? issuer : cert.get();
  bool ok = AddExt(cert.get(), iss, NID_subject_key_identifier, "hash");
  if (ca) {
    ok = ok && AddExt(cert.get(), iss, NID_basic_constraints, "critical,CA:TRUE") &&
         AddExt(cert.get(), iss, NID_key_usage, "critical,keyCertSign,cRLSign");
  } else {
    ok = ok && AddExt(cert.get(), iss, NID_basic_constraints, "critical,CA:FALSE") &&
         AddExt(cert.get(), iss, NID_authority_key_identifier, "keyid:always") &&
         AddExt(cert.get(), iss, NID_key_usage, "critical,digitalSignature") &&
         AddExt(cert.get(), iss, NID_ext_key_usage, eku);
  }
  if (!ok || X509_sign(cert.get(), issuer_key != nullptr ? issuer_key : key, EVP_sha256()) <= 0) {
    return nullptr;
  }
  return cert;
}

std::string Pem(X509* cert) {
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_X509(bio, cert);
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  std::string out(data, n > 0 ? n : 0);
  BIO_free(bio);
  return out;
}

int TimeCb(TS_RESP_CTX*, void* data, long* sec, long* usec) {
  *sec = static_cast<long>(*static_cast<int64_t*>(data));
  *usec = 0;
  return 1;
}

ASN1_INTEGER* SerialCb(TS_RESP_CTX*, void* data) {
  ASN1_INTEGER* i = ASN1_INTEGER_new();
  if (i != nullptr) ASN1_INTEGER_set_uint64(i, *static_cast<uint64_t*>(data));
  return i;
}

}  // namespace

class Authority::Impl {
 public:
  KeyPtr ca_key, tsa_key;
  X509Ptr ca, tsa;
  AuthorityOptions options;
};

Authority::Authority(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {
  ca_pem_ = Pem(impl_->ca.get());
  tsa_pem_ = Pem(impl_->tsa.get());
}
Authority::~Authority() = default;

absl::StatusOr<std::unique_ptr<Authority>> Authority::Generate(const AuthorityOptions& o) {
  auto impl = std::make_unique<Impl>();
  impl->options = o;
  impl->ca_key.reset(EVP_EC_gen("P-256"));
  impl->tsa_key.reset(EVP_EC_gen("P-256"));
  if (!impl->ca_key || !impl->tsa_key) return absl::InternalError(Err("key generation"));
  impl->ca = MakeCert(o.name + " Root CA", 1, impl->ca_key.get(), nullptr, nullptr,
                      o.now - absl::Hours(1), o.now + absl::Hours(24 * 365 * 10), true, nullptr);
  if (!impl->ca) return absl::InternalError(Err("CA certificate"));
  impl->tsa =
      MakeCert(o.name, 2, impl->tsa_key.get(), impl->ca.get(), impl->ca_key.get(),
               o.now + o.tsa_not_before, o.now + o.tsa_not_after, false, "critical,timeStamping");
  if (!impl->tsa) return absl::InternalError(Err("TSA certificate"));
  return std::unique_ptr<Authority>(new Authority(std::move(impl)));
}

absl::StatusOr<std::string> Authority::Respond(absl::string_view request_der, absl::Time time,
                                               uint64_t serial) const {
  std::unique_ptr<TS_RESP_CTX, void (*)(TS_RESP_CTX*)> ctx(TS_RESP_CTX_new(), TS_RESP_CTX_free);
  if (!ctx) return absl::InternalError(Err("context"));
  ASN1_OBJECT* policy = OBJ_txt2obj(kSandboxPolicyOid, 1);
  int64_t seconds = absl::ToUnixSeconds(time);
  uint64_t serial_value = serial;
  bool ok = TS_RESP_CTX_set_signer_cert(ctx.get(), impl_->tsa.get()) == 1 &&
            TS_RESP_CTX_set_signer_key(ctx.get(), impl_->tsa_key.get()) == 1 &&
            TS_RESP_CTX_set_signer_digest(ctx.get(), EVP_sha256()) == 1 &&
            TS_RESP_CTX_set_ess_cert_id_digest(ctx.get(), EVP_sha256()) == 1 && policy != nullptr &&
            TS_RESP_CTX_set_def_policy(ctx.get(), policy) == 1 &&
            TS_RESP_CTX_add_md(ctx.get(), EVP_sha256()) == 1 &&
            TS_RESP_CTX_set_accuracy(ctx.get(), 1, 0, 0) == 1;
  ASN1_OBJECT_free(policy);
  if (!ok) return absl::InternalError(Err("configuring the responder"));
  TS_RESP_CTX_set_time_cb(ctx.get(), TimeCb, &seconds);
  TS_RESP_CTX_set_serial_cb(ctx.get(), SerialCb, &serial_value);
  BIO* in = BIO_new_mem_buf(request_der.data(), static_cast<int>(request_der.size()));
  TS_RESP* resp = TS_RESP_create_response(ctx.get(), in);
  BIO_free(in);
  if (resp == nullptr) return absl::InternalError(Err("creating the response"));
  unsigned char* der = nullptr;
  int n = i2d_TS_RESP(resp, &der);
  TS_RESP_free(resp);
  if (n <= 0) return absl::InternalError(Err("encoding the response"));
  std::string out(reinterpret_cast<char*>(der), n);
  OPENSSL_free(der);
  ERR_clear_error();
  return out;
}

absl::StatusOr<std::string> Authority::IssueTwinWithoutTimestampingEku() const {
  X509Ptr twin(X509_dup(impl_->tsa.get()));
  if (!twin) return absl::InternalError(Err("dup"));
  int idx = X509_get_ext_by_NID(twin.get(), NID_ext_key_usage, -1);
  if (idx >= 0) X509_EXTENSION_free(X509_delete_ext(twin.get(), idx));
  if (!AddExt(twin.get(), impl_->ca.get(), NID_ext_key_usage, "critical,codeSigning") ||
      X509_sign(twin.get(), impl_->ca_key.get(), EVP_sha256()) <= 0) {
    return absl::InternalError(Err("twin certificate"));
  }
  return Pem(twin.get());
}

absl::StatusOr<std::string> ReplaceTokenCertificates(absl::string_view tsr,
                                                     absl::string_view cert_pem) {
  const unsigned char* p = reinterpret_cast<const unsigned char*>(tsr.data());
  std::unique_ptr<TS_RESP, void (*)(TS_RESP*)> resp(
      d2i_TS_RESP(nullptr, &p, static_cast<long>(tsr.size())), TS_RESP_free);
  if (!resp) return absl::InvalidArgumentError(Err("not a TimeStampResp"));
  PKCS7* token = TS_RESP_get_token(resp.get());
  if (token == nullptr || !PKCS7_type_is_signed(token)) {
    return absl::InvalidArgumentError("no signed token");
  }
  BIO* bio = BIO_new_mem_buf(cert_pem.data(), static_cast<int>(cert_pem.size()));
  X509* cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  if (cert == nullptr) return absl::InvalidArgumentError(Err("certificate"));
  sk_X509_pop_free(token->d.sign->cert, X509_free);
  token->d.sign->cert = sk_X509_new_null();
  sk_X509_push(token->d.sign->cert, cert);
  unsigned char* der = nullptr;
  int n = i2d_TS_RESP(resp.get(), &der);
  if (n <= 0) return absl::InternalError(Err("encoding"));
  std::string out(reinterpret_cast<char*>(der), n);
  OPENSSL_free(der);
  return out;
}

}  // namespace anchord::tsa
