#include "stun/binding.h"

#include <algorithm>

namespace sluice::stun {
namespace {

// Comprehension-required attributes this server understands in a Binding request. Those of
// RFC 5780 (CHANGE-REQUEST, RESPONSE-PORT) only with an alternate address (`nat`): with one
// address the server cannot honour them, and RFC 5780 §7.2 has such a server answer 420.
bool understood(uint16_t type, bool nat) {
  switch (type) {
    case attr::kChangeRequest:
    case attr::kResponsePort:
      return nat;
    case attr::kUsername:
    case attr::kMessageIntegrity:
    case attr::kMessageIntegritySha256:
    case attr::kRealm:
    case attr::kNonce:
    case attr::kPasswordAlgorithm:
    case attr::kUserhash:
    case attr::kPriority:
    case attr::kUseCandidate:
    case attr::kPadding:
    // Known, but only in responses: a request carrying one is answered 400 below.
    case attr::kMappedAddress:
    case attr::kXorMappedAddress:
    case attr::kErrorCode:
    case attr::kUnknownAttributes:
      return true;
    default:
      return false;
  }
}

// Whether a known attribute's value is well formed in a request (false: 400).
bool well_formed(const Attribute& a) {
  switch (a.type) {
    case attr::kUsername:
      return a.value.size() <= 513;  // RFC 8489 §14.3
    case attr::kMessageIntegrity:
      return a.value.size() == 20;
    case attr::kMessageIntegritySha256:
      return a.value.size() >= 16 && a.value.size() <= 32 && a.value.size() % 4 == 0;
    case attr::kPriority:
      return a.value.size() == 4;  // RFC 8445 §16.1
    case attr::kUseCandidate:
      return a.value.empty();
    case attr::kChangeRequest:  // RFC 5780 §7.2
    case attr::kResponsePort:   // §7.5: the port, then 2 bytes of padding
      return a.value.size() == 4;
    case attr::kMappedAddress:
    case attr::kXorMappedAddress:
    case attr::kErrorCode:
    case attr::kUnknownAttributes:
      return false;  // response attributes
    default:
      return true;
  }
}

// The integrity an answer carries (RFC 8489 §9.1.4): the request's algorithm under its
// credential's key, the SHA-256 one cut to the request's length; none for an unauthenticated
// request.
struct Integrity {
  const Credential* credential = nullptr;
  bool sha256 = false;
  size_t size = 0;

  void add_to(MessageWriter& w) const {
    if (!credential) return;
    auto key = std::span(reinterpret_cast<const uint8_t*>(credential->password.data()),
                         credential->password.size());
    if (sha256) {
      w.add_message_integrity_sha256(key, size);
    } else {
      w.add_message_integrity(key);
    }
  }
};

// §14.5: what follows MESSAGE-INTEGRITY is not covered by it and is ignored; an attribute
// appended to a captured signed request must not redirect the answer.
bool before_integrity(const Message& m, const Attribute* at) {
  for (const auto& a : m.attributes) {
    if (&a == at) return true;
    if (a.type == attr::kMessageIntegrity || a.type == attr::kMessageIntegritySha256) return false;
  }
  return false;
}

void error_answer(const Message& request, size_t request_size, int code, std::string_view reason,
                  std::span<const uint16_t> unknown, Answer& a, const Integrity& integrity = {}) {
  a.outcome = code == 420   ? Outcome::kUnknownAttribute
              : code == 401 ? Outcome::kUnauthenticated
                            : Outcome::kBadRequest;
  auto build = [&](std::string_view text) {
    MessageWriter w(request.method, MessageClass::kError, request.transaction_id,
                    std::move(a.response));
    w.add_error(code, text);
    if (!unknown.empty()) w.add_unknown(unknown);
    integrity.add_to(w);
    w.finish(true);
    a.response = w.take();
  };
  build(reason);
  // The reason phrase is optional text: only when the request pays for it.
  if (a.response.size() > request_size) build("");
}

}  // namespace

const char* to_string(Outcome o) {
  switch (o) {
    case Outcome::kSuccess:
      return "success";
    case Outcome::kBadRequest:
      return "400";
    case Outcome::kUnknownAttribute:
      return "420";
    case Outcome::kUnauthenticated:
      return "401";
    case Outcome::kDropNotStun:
      return "not_stun";
    case Outcome::kDropMalformed:
      return "malformed";
    case Outcome::kDropBadFingerprint:
      return "bad_fingerprint";
    case Outcome::kDropNotRequest:
      return "not_request";
  }
  return "?";
}

net::Address combine(const net::Address& ip_of, const net::Address& port_of) {
  net::Address a = ip_of;
  a.set_port(port_of.port());
  return a;
}

Answer answer_binding(std::span<const uint8_t> request, const net::Address& source,
                      const ServerOptions& options, const NatDiscovery* nat) {
  Answer a;
  answer_binding(request, source, options, nat, a);
  return a;
}

void answer_binding(std::span<const uint8_t> request, const net::Address& source,
                    const ServerOptions& options, const NatDiscovery* nat, Answer& a) {
  a.outcome = Outcome::kDropNotStun;
  a.response.clear();
  a.change = 0;
  a.response_port = 0;
  ParseResult parsed = parse(request);
  if (!parsed.message) {
    switch (parsed.error) {
      case ParseError::kTooShort:
      case ParseError::kNotStun:
      case ParseError::kBadCookie:
        a.outcome = Outcome::kDropNotStun;
        break;
      case ParseError::kBadLength:
      case ParseError::kAttributeOverrun:
        a.outcome = Outcome::kDropMalformed;
        break;
      case ParseError::kBadFingerprint:
        a.outcome = Outcome::kDropBadFingerprint;
        break;
    }
    return;
  }
  const Message& m = *parsed.message;
  // §6.3: only requests get an answer; an indication or a response (perhaps to a request
  // spoofed with this server's address) is dropped.
  if (m.message_class != MessageClass::kRequest) {
    a.outcome = Outcome::kDropNotRequest;
    return;
  }
  if (m.method != kBinding) return error_answer(m, request.size(), 400, "Unknown method", {}, a);

  // §9.1.3: with short-term credentials a request is authenticated first. Without USERNAME
  // and an integrity attribute: 400; an unknown user or a wrong HMAC: 401, neither with
  // integrity. With both attributes, MESSAGE-INTEGRITY-SHA256 is the one checked.
  Integrity integrity;
  if (!options.credentials.empty()) {
    const Attribute* user = m.find(attr::kUsername);
    const Attribute* sha256 = m.find(attr::kMessageIntegritySha256);
    const Attribute* sha1 = m.find(attr::kMessageIntegrity);
    if (!user || (!sha1 && !sha256)) {
      return error_answer(m, request.size(), 400, "Bad Request", {}, a);
    }
    std::string_view name(reinterpret_cast<const char*>(user->value.data()), user->value.size());
    for (const Credential& c : options.credentials) {
      if (c.username == name) integrity.credential = &c;
    }
    if (!integrity.credential) {
      return error_answer(m, request.size(), 401, "Unauthenticated", {}, a);
    }
    const auto& password = integrity.credential->password;
    auto key = std::span(reinterpret_cast<const uint8_t*>(password.data()), password.size());
    bool ok = sha256 ? check_message_integrity_sha256(request, m, key)
                     : check_message_integrity(request, m, key);
    if (!ok) return error_answer(m, request.size(), 401, "Unauthenticated", {}, a);
    integrity.sha256 = sha256 != nullptr;
    integrity.size = sha256 ? sha256->value.size() : 20;
  }

  // §6.3.1: unknown comprehension-required attributes get 420, listed once each. Attributes
  // after MESSAGE-INTEGRITY other than MESSAGE-INTEGRITY-SHA256 and FINGERPRINT are ignored
  // (§14.5).
  uint16_t unknown[16];
  size_t n_unknown = 0;
  bool after_integrity = false;
  bool malformed = false;
  for (const auto& at : m.attributes) {
    if (after_integrity && at.type != attr::kMessageIntegritySha256 &&
        at.type != attr::kFingerprint) {
      continue;
    }
    if (attr::comprehension_required(at.type) && !understood(at.type, nat != nullptr)) {
      if (n_unknown < std::size(unknown) &&
          std::find(unknown, unknown + n_unknown, at.type) == unknown + n_unknown) {
        unknown[n_unknown++] = at.type;
      }
    } else if (!well_formed(at)) {
      malformed = true;
    }
    if (at.type == attr::kMessageIntegrity) after_integrity = true;
  }
  if (n_unknown > 0) {
    return error_answer(m, request.size(), 420, "Unknown Attribute",
                        std::span<const uint16_t>(unknown, n_unknown), a, integrity);
  }
  if (malformed) return error_answer(m, request.size(), 400, "Bad Request", {}, a, integrity);

  // RFC 5780 §7.2, §7.5: which address answers, and to which port.
  net::Address origin;
  if (nat) {
    // (The size is checked again: a copy after MESSAGE-INTEGRITY was not checked above.)
    if (const Attribute* c = m.find(attr::kChangeRequest);
        c && c->value.size() == 4 && before_integrity(m, c)) {
      a.change = static_cast<uint8_t>(c->value[3] & (kChangeIp | kChangePort));
    }
    if (const Attribute* p = m.find(attr::kResponsePort);
        p && p->value.size() == 4 && before_integrity(m, p)) {
      a.response_port = static_cast<uint16_t>(p->value[0] << 8 | p->value[1]);
    }
    origin = combine((a.change & kChangeIp) ? nat->other : nat->local,
                     (a.change & kChangePort) ? nat->other : nat->local);
  }

  // The optional attributes, dropped from the last while the request does not pay for them:
  // SOFTWARE first, then RESPONSE-ORIGIN and OTHER-ADDRESS.
  bool software = !options.software.empty();
  bool discovery = nat != nullptr;
  auto build = [&] {
    MessageWriter w(kBinding, MessageClass::kSuccess, m.transaction_id, std::move(a.response));
    w.add_address(attr::kXorMappedAddress, source, true);
    if (discovery) {
      w.add_address(attr::kOtherAddress, nat->other, false);
      w.add_address(attr::kResponseOrigin, origin, false);
    }
    if (software) w.add_string(attr::kSoftware, options.software);
    integrity.add_to(w);
    w.finish(true);
    a.response = w.take();
  };
  a.outcome = Outcome::kSuccess;
  build();
  if (a.response.size() > request.size() && software) {
    software = false;
    build();
  }
  if (a.response.size() > request.size() && discovery) {
    discovery = false;
    build();
  }
}

}  // namespace sluice::stun
