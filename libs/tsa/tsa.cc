#include "libs/tsa/tsa.h"

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/pkcs7.h>
#include <openssl/rand.h>
#include <openssl/ts.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <memory>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "libs/common/hex.h"

namespace anchord::tsa {
namespace {

template <typename T, void (*F)(T*)>
struct Deleter {
  void operator()(T* p) const { F(p); }
};
using ReqPtr = std::unique_ptr<TS_REQ, Deleter<TS_REQ, TS_REQ_free>>;
using RespPtr = std::unique_ptr<TS_RESP, Deleter<TS_RESP, TS_RESP_free>>;
using BioPtr = std::unique_ptr<BIO, Deleter<BIO, BIO_free_all>>;
using StorePtr = std::unique_ptr<X509_STORE, Deleter<X509_STORE, X509_STORE_free>>;
using VerifyCtxPtr = std::unique_ptr<TS_VERIFY_CTX, Deleter<TS_VERIFY_CTX, TS_VERIFY_CTX_free>>;
using X509Ptr = std::unique_ptr<X509, Deleter<X509, X509_free>>;

struct CertStackFree {
  void operator()(STACK_OF(X509) * s) const { sk_X509_pop_free(s, X509_free); }
};
using CertStack = std::unique_ptr<STACK_OF(X509), CertStackFree>;

// The first OpenSSL error on this thread's queue, then clears the queue (so a later call does
// not report a stale error).
std::string OpensslError() {
  std::string out;
  for (int i = 0; i < 4; ++i) {
    const char* data = nullptr;
    int flags = 0;
    unsigned long e = ERR_get_error_all(nullptr, nullptr, nullptr, &data, &flags);
    if (e == 0) break;
    char buf[256];
    ERR_error_string_n(e, buf, sizeof(buf));
    if (!out.empty()) out += "; ";
    out += buf;
    // The X509 verification detail ("certificate has expired") travels as the error's data.
    if (data != nullptr && (flags & ERR_TXT_STRING)) absl::StrAppend(&out, ": ", data);
  }
  ERR_clear_error();
  return out.empty() ? "unknown OpenSSL error" : out;
}

void FreeOpensslString(char* p) { OPENSSL_free(p); }

std::string BigEndianHex(const ASN1_INTEGER* i) {
  if (i == nullptr) return "";
  std::unique_ptr<BIGNUM, Deleter<BIGNUM, BN_free>> bn(ASN1_INTEGER_to_BN(i, nullptr));
  if (!bn) return "";
  if (BN_is_zero(bn.get())) return "0";
  std::unique_ptr<char, Deleter<char, FreeOpensslString>> hex(BN_bn2hex(bn.get()));
  if (!hex) return "";
  std::string s = absl::AsciiStrToLower(hex.get());
  size_t nz = s.find_first_not_of('0');
  if (s[0] == '-') return s;  // negative serials exist in the wild; kept visible
  return nz == std::string::npos ? "0" : s.substr(nz);
}

std::string Oid(const ASN1_OBJECT* o) {
  if (o == nullptr) return "";
  char buf[128];
  int n = OBJ_obj2txt(buf, sizeof(buf), o, 1);
  return n > 0 ? std::string(buf, std::min<size_t>(n, sizeof(buf) - 1)) : "";
}

std::string NameLine(const X509_NAME* name) {
  if (name == nullptr) return "";
  BioPtr bio(BIO_new(BIO_s_mem()));
  X509_NAME_print_ex(bio.get(), name, 0, XN_FLAG_ONELINE & ~ASN1_STRFLGS_ESC_MSB);
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  return n > 0 ? std::string(data, n) : "";
}

std::string GeneralNameText(const GENERAL_NAME* gn) {
  if (gn == nullptr) return "";
  if (gn->type == GEN_DIRNAME) return NameLine(gn->d.directoryName);
  BioPtr bio(BIO_new(BIO_s_mem()));
  GENERAL_NAME_print(bio.get(), const_cast<GENERAL_NAME*>(gn));
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  return n > 0 ? std::string(data, n) : "";
}

absl::Time FromGeneralizedTime(const ASN1_GENERALIZEDTIME* t) {
  struct tm tm {};
  if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1) return absl::InfinitePast();
  absl::CivilSecond cs(tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                       tm.tm_sec);
  return absl::FromCivil(cs, absl::UTCTimeZone());
}

absl::StatusOr<RespPtr> ParseResp(absl::string_view tsr) {
  if (tsr.empty()) return absl::InvalidArgumentError("tsr: empty");
  if (tsr.size() > kMaxTsrBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("tsr: ", tsr.size(), " bytes, more than the ", kMaxTsrBytes, " accepted"));
  }
  const unsigned char* p = reinterpret_cast<const unsigned char*>(tsr.data());
  RespPtr resp(d2i_TS_RESP(nullptr, &p, static_cast<long>(tsr.size())));
  if (!resp) {
    return absl::InvalidArgumentError(
        absl::StrCat("tsr: not a DER TimeStampResp (", OpensslError(), ")"));
  }
  const size_t used = static_cast<size_t>(p - reinterpret_cast<const unsigned char*>(tsr.data()));
  if (used != tsr.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("tsr: ", tsr.size() - used, " trailing bytes after the TimeStampResp"));
  }
  return resp;
}

std::string StatusText(const TS_STATUS_INFO* si) {
  static const char* kStatus[] = {"granted", "grantedWithMods",   "rejection",
                                  "waiting", "revocationWarning", "revocationNotification"};
  long s = ASN1_INTEGER_get(TS_STATUS_INFO_get0_status(si));
  std::string out = (s >= 0 && s <= 5) ? kStatus[s] : absl::StrCat("status ", s);
  const STACK_OF(ASN1_UTF8STRING)* text = TS_STATUS_INFO_get0_text(si);
  for (int i = 0; text != nullptr && i < sk_ASN1_UTF8STRING_num(text) && i < 4; ++i) {
    const ASN1_UTF8STRING* t = sk_ASN1_UTF8STRING_value(text, i);
    std::string piece(reinterpret_cast<const char*>(ASN1_STRING_get0_data(t)),
                      std::min(ASN1_STRING_length(t), 200));
    for (char& c : piece) {
      if (c < 0x20 || c > 0x7e) c = '?';
    }
    absl::StrAppend(&out, ": ", piece);
  }
  const ASN1_BIT_STRING* fi = TS_STATUS_INFO_get0_failure_info(si);
  static const struct {
    int bit;
    const char* name;
  } kFail[] = {{TS_INFO_BAD_ALG, "badAlg"},
               {TS_INFO_BAD_REQUEST, "badRequest"},
               {TS_INFO_BAD_DATA_FORMAT, "badDataFormat"},
               {TS_INFO_TIME_NOT_AVAILABLE, "timeNotAvailable"},
               {TS_INFO_UNACCEPTED_POLICY, "unacceptedPolicy"},
               {TS_INFO_UNACCEPTED_EXTENSION, "unacceptedExtension"},
               {TS_INFO_ADD_INFO_NOT_AVAILABLE, "addInfoNotAvailable"},
               {TS_INFO_SYSTEM_FAILURE, "systemFailure"}};
  for (const auto& f : kFail) {
    if (fi != nullptr && ASN1_BIT_STRING_get_bit(fi, f.bit))
      absl::StrAppend(&out, " [", f.name, "]");
  }
  return out;
}

X509* SignerCert(PKCS7* token) {
  if (token == nullptr || !PKCS7_type_is_signed(token) || token->d.sign == nullptr) return nullptr;
  STACK_OF(PKCS7_SIGNER_INFO)* sinfos = PKCS7_get_signer_info(token);
  if (sinfos == nullptr || sk_PKCS7_SIGNER_INFO_num(sinfos) != 1) return nullptr;
  PKCS7_SIGNER_INFO* si = sk_PKCS7_SIGNER_INFO_value(sinfos, 0);
  STACK_OF(X509)* certs = token->d.sign->cert;
  if (si == nullptr || si->issuer_and_serial == nullptr) return nullptr;
  return X509_find_by_issuer_and_serial(certs, si->issuer_and_serial->issuer,
                                        si->issuer_and_serial->serial);
}

absl::StatusOr<TokenInfo> InfoOf(TS_RESP* resp) {
  TS_STATUS_INFO* si = TS_RESP_get_status_info(resp);
  long status = ASN1_INTEGER_get(TS_STATUS_INFO_get0_status(si));
  if (status != 0 && status != 1) {
    return absl::FailedPreconditionError(absl::StrCat("tsr: not granted (", StatusText(si), ")"));
  }
  TS_TST_INFO* tst = TS_RESP_get_tst_info(resp);
  PKCS7* token = TS_RESP_get_token(resp);
  if (tst == nullptr || token == nullptr) {
    return absl::InvalidArgumentError("tsr: granted but carries no time-stamp token");
  }
  TokenInfo info;
  TS_MSG_IMPRINT* mi = TS_TST_INFO_get_msg_imprint(tst);
  X509_ALGOR* alg = TS_MSG_IMPRINT_get_algo(mi);
  const ASN1_OBJECT* aobj = nullptr;
  X509_ALGOR_get0(&aobj, nullptr, nullptr, alg);
  int nid = OBJ_obj2nid(aobj);
  info.hash_algorithm = nid != NID_undef ? OBJ_nid2sn(nid) : Oid(aobj);
  ASN1_OCTET_STRING* md = TS_MSG_IMPRINT_get_msg(mi);
  info.imprint.assign(reinterpret_cast<const char*>(ASN1_STRING_get0_data(md)),
                      ASN1_STRING_length(md));
  const ASN1_GENERALIZEDTIME* gt = TS_TST_INFO_get_time(tst);
  info.gen_time = FromGeneralizedTime(gt);
  if (gt != nullptr) {
    info.gen_time_text.assign(reinterpret_cast<const char*>(ASN1_STRING_get0_data(gt)),
                              std::min(ASN1_STRING_length(gt), 64));
  }
  info.policy_oid = Oid(TS_TST_INFO_get_policy_id(tst));
  info.serial_hex = BigEndianHex(TS_TST_INFO_get_serial(tst));
  info.nonce_hex = BigEndianHex(TS_TST_INFO_get_nonce(tst));
  if (X509* signer = SignerCert(token))
    info.signer_subject = NameLine(X509_get_subject_name(signer));
  info.tsa_name = GeneralNameText(TS_TST_INFO_get_tsa(tst));
  if (info.tsa_name.empty()) info.tsa_name = info.signer_subject;
  return info;
}

CertStack ReadPemCerts(absl::string_view pem) {
  CertStack out(sk_X509_new_null());
  if (pem.empty() || pem.size() > (4u << 20)) return out;
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  while (true) {
    X509* c = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr);
    if (c == nullptr) break;
    sk_X509_push(out.get(), c);
    if (sk_X509_num(out.get()) > 64) break;
  }
  ERR_clear_error();  // the loop ends on "no start line"
  return out;
}

bool HasCriticalTimestampingEku(X509* cert) {
  int idx = X509_get_ext_by_NID(cert, NID_ext_key_usage, -1);
  if (idx < 0) return false;
  X509_EXTENSION* ext = X509_get_ext(cert, idx);
  if (!X509_EXTENSION_get_critical(ext)) return false;
  return (X509_get_extension_flags(cert) & EXFLAG_XKUSAGE) &&
         X509_get_extended_key_usage(cert) == XKU_TIMESTAMP;
}

}  // namespace

absl::StatusOr<TsaRequest> BuildRequest(const Digest& digest) {
  unsigned char nonce_bytes[kNonceBytes];
  if (RAND_bytes(nonce_bytes, sizeof(nonce_bytes)) != 1) {
    return absl::InternalError("tsa: the CSPRNG failed; no request built");
  }
  ReqPtr req(TS_REQ_new());
  std::unique_ptr<TS_MSG_IMPRINT, Deleter<TS_MSG_IMPRINT, TS_MSG_IMPRINT_free>> mi(
      TS_MSG_IMPRINT_new());
  std::unique_ptr<X509_ALGOR, Deleter<X509_ALGOR, X509_ALGOR_free>> alg(X509_ALGOR_new());
  std::unique_ptr<BIGNUM, Deleter<BIGNUM, BN_free>> bn(
      BN_bin2bn(nonce_bytes, sizeof(nonce_bytes), nullptr));
  std::unique_ptr<ASN1_INTEGER, Deleter<ASN1_INTEGER, ASN1_INTEGER_free>> nonce(
      bn ? BN_to_ASN1_INTEGER(bn.get(), nullptr) : nullptr);
  if (!req || !mi || !alg || !nonce) return absl::InternalError("tsa: out of memory");
  X509_ALGOR_set0(alg.get(), OBJ_nid2obj(NID_sha256), V_ASN1_NULL, nullptr);
  if (TS_REQ_set_version(req.get(), 1) != 1 || TS_MSG_IMPRINT_set_algo(mi.get(), alg.get()) != 1 ||
      TS_MSG_IMPRINT_set_msg(mi.get(), const_cast<unsigned char*>(digest.array().data()),
                             Digest::kSize) != 1 ||
      TS_REQ_set_msg_imprint(req.get(), mi.get()) != 1 ||
      TS_REQ_set_nonce(req.get(), nonce.get()) != 1 || TS_REQ_set_cert_req(req.get(), 1) != 1) {
    return absl::InternalError(absl::StrCat("tsa: building the request: ", OpensslError()));
  }
  unsigned char* der = nullptr;
  int n = i2d_TS_REQ(req.get(), &der);
  if (n <= 0)
    return absl::InternalError(absl::StrCat("tsa: encoding the request: ", OpensslError()));
  TsaRequest out;
  out.der.assign(reinterpret_cast<char*>(der), n);
  OPENSSL_free(der);
  out.nonce_hex = BigEndianHex(nonce.get());
  return out;
}

absl::StatusOr<ParsedRequest> ParseRequest(absl::string_view der) {
  if (der.empty() || der.size() > 16 * 1024) {
    return absl::InvalidArgumentError("request: must be 1..16384 bytes of DER");
  }
  const unsigned char* p = reinterpret_cast<const unsigned char*>(der.data());
  ReqPtr req(d2i_TS_REQ(nullptr, &p, static_cast<long>(der.size())));
  if (!req || p != reinterpret_cast<const unsigned char*>(der.data()) + der.size()) {
    ERR_clear_error();
    return absl::InvalidArgumentError("request: not a DER TimeStampReq");
  }
  if (TS_REQ_get_version(req.get()) != 1) {
    return absl::InvalidArgumentError("request: version must be 1");
  }
  TS_MSG_IMPRINT* mi = TS_REQ_get_msg_imprint(req.get());
  const ASN1_OBJECT* aobj = nullptr;
  X509_ALGOR_get0(&aobj, nullptr, nullptr, TS_MSG_IMPRINT_get_algo(mi));
  if (OBJ_obj2nid(aobj) != NID_sha256) {
    return absl::InvalidArgumentError("request: the message imprint must be SHA-256");
  }
  ASN1_OCTET_STRING* md = TS_MSG_IMPRINT_get_msg(mi);
  if (ASN1_STRING_length(md) != 32) {
    return absl::InvalidArgumentError("request: the SHA-256 imprint must be 32 bytes");
  }
  ParsedRequest out;
  out.imprint.assign(reinterpret_cast<const char*>(ASN1_STRING_get0_data(md)), 32);
  out.nonce_hex = BigEndianHex(TS_REQ_get_nonce(req.get()));
  out.cert_req = TS_REQ_get_cert_req(req.get()) != 0;
  return out;
}

bool LooksLikeTsr(absl::string_view bytes) {
  return bytes.size() >= 2 && static_cast<unsigned char>(bytes[0]) == 0x30;
}

absl::StatusOr<TokenInfo> Inspect(absl::string_view tsr) {
  auto resp = ParseResp(tsr);
  if (!resp.ok()) return resp.status();
  return InfoOf(resp->get());
}

absl::StatusOr<TokenInfo> Verify(absl::string_view tsr, const Trust& trust,
                                 const VerifyOptions& options) {
  auto resp = ParseResp(tsr);
  if (!resp.ok()) return resp.status();
  auto info = InfoOf(resp->get());
  if (!info.ok()) return info.status();
  if (info->hash_algorithm != "SHA256") {
    return absl::FailedPreconditionError(
        absl::StrCat("tsr: the message imprint is ", info->hash_algorithm, ", not SHA-256"));
  }
  if (!options.expected_digest.has_value()) {
    return absl::InvalidArgumentError("expected digest: required");
  }
  if (info->imprint != options.expected_digest->bytes()) {
    return absl::FailedPreconditionError(
        absl::StrCat("tsr: the token's message imprint ", HexEncode(info->imprint),
                     " is not the expected digest ", options.expected_digest->hex(),
                     " (a token for other data)"));
  }
  if (!options.expected_nonce_hex.empty() &&
      info->nonce_hex != absl::AsciiStrToLower(options.expected_nonce_hex)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "tsr: nonce ", info->nonce_hex.empty() ? "(none)" : info->nonce_hex,
        " is not the nonce sent (", options.expected_nonce_hex, "): not an answer to our request"));
  }
  PKCS7* token = TS_RESP_get_token(resp->get());
  X509* signer = SignerCert(token);
  if (signer == nullptr) {
    return absl::FailedPreconditionError(
        "tsr: the token does not carry its signer certificate (certReq was set)");
  }
  if (!HasCriticalTimestampingEku(signer)) {
    return absl::FailedPreconditionError(
        absl::StrCat("tsr: the signer certificate (", info->signer_subject,
                     ") lacks the critical extended key usage timeStamping and nothing else"));
  }
  CertStack anchors = ReadPemCerts(trust.ca_pem);
  if (sk_X509_num(anchors.get()) == 0) {
    return absl::InvalidArgumentError("trust anchors: no PEM certificate found");
  }
  StorePtr store(X509_STORE_new());
  for (int i = 0; i < sk_X509_num(anchors.get()); ++i) {
    X509_STORE_add_cert(store.get(), sk_X509_value(anchors.get(), i));
  }
  // The signer must have been valid when it signed; the token may be verified years later.
  if (info->gen_time != absl::InfinitePast()) {
    X509_VERIFY_PARAM* param = X509_STORE_get0_param(store.get());
    X509_VERIFY_PARAM_set_time(param, absl::ToTimeT(info->gen_time));
  }
  VerifyCtxPtr ctx(TS_VERIFY_CTX_new());
  if (!ctx) return absl::InternalError("tsa: out of memory");
  TS_VERIFY_CTX_set_flags(ctx.get(), TS_VFY_VERSION | TS_VFY_SIGNATURE);
  TS_VERIFY_CTX_set_store(ctx.get(), store.release());  // ctx owns it now
  CertStack untrusted = ReadPemCerts(trust.untrusted_pem);
  if (sk_X509_num(untrusted.get()) > 0) TS_VERIFY_CTX_set_certs(ctx.get(), untrusted.release());
  ERR_clear_error();
  if (TS_RESP_verify_response(ctx.get(), resp->get()) != 1) {
    return absl::FailedPreconditionError(absl::StrCat(
        "tsr: the signature does not verify against the trust anchors (", OpensslError(), ")"));
  }
  if (options.now != absl::InfinitePast()) {
    if (info->gen_time > options.now + options.max_skew) {
      return absl::FailedPreconditionError(
          absl::StrCat("tsr: genTime ", info->gen_time_text, " is in the future"));
    }
    if (info->gen_time < options.now - options.max_age) {
      return absl::FailedPreconditionError(
          absl::StrCat("tsr: genTime ", info->gen_time_text, " is too old for a fresh answer"));
    }
  }
  return info;
}

absl::StatusOr<std::string> TokenCertificatesPem(absl::string_view tsr) {
  auto resp = ParseResp(tsr);
  if (!resp.ok()) return resp.status();
  PKCS7* token = TS_RESP_get_token(resp->get());
  if (token == nullptr || !PKCS7_type_is_signed(token) || token->d.sign == nullptr) {
    return absl::InvalidArgumentError("tsr: no signed token");
  }
  std::string out;
  X509* signer = SignerCert(token);
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (signer != nullptr) PEM_write_bio_X509(bio.get(), signer);
  STACK_OF(X509)* certs = token->d.sign->cert;
  for (int i = 0; certs != nullptr && i < sk_X509_num(certs); ++i) {
    X509* c = sk_X509_value(certs, i);
    if (c != signer) PEM_write_bio_X509(bio.get(), c);
  }
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  if (n > 0) out.assign(data, n);
  return out;
}

std::string RenderInfo(const TokenInfo& info) {
  return absl::StrCat("TSA:            ", info.tsa_name, "\n", "Time:           ",
                      absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", info.gen_time, absl::UTCTimeZone()),
                      " (genTime ", info.gen_time_text, ")\n", "Policy OID:     ", info.policy_oid,
                      "\n", "Serial:         ", info.serial_hex, "\n",
                      "Hash algorithm: ", info.hash_algorithm, "\n",
                      "Imprint:        ", HexEncode(info.imprint), "\n",
                      "Nonce:          ", info.nonce_hex.empty() ? "(none)" : info.nonce_hex, "\n",
                      "Signer:         ", info.signer_subject, "\n");
}

int CountPemCertificates(absl::string_view pem) {
  CertStack s = ReadPemCerts(pem);
  return sk_X509_num(s.get());
}

}  // namespace anchord::tsa
