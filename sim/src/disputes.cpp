// The Dispute API (docs/klarna/PAYMENTS-API.md "Disputes"): list, read, accept loss,
// upload evidence (multipart, ≤ 7 MB, PDF/JPG/PNG/DOCX), represent, appeal,
// download; a wrong state answers 409 RESOURCE_CONFLICT. And the control
// that announces a deadline extension (/_sim/disputes/{id}/extend) in the
// current or the legacy shape.
#include <algorithm>

#include "api_internal.hpp"

namespace kpay::sim {

using namespace detail;

namespace {

constexpr std::int64_t kDay = 24LL * 3600 * 1000;
constexpr std::size_t kMaxAdditionalInformation = 5000;

std::vector<std::string> prefix_segments(std::string_view prefix) {
  return split_path(prefix);
}

// ---- multipart/form-data (RFC 7578), just enough for one `file` part

struct FilePart {
  std::string file_name, content_type, bytes;
};

std::string header_param(std::string_view header, std::string_view name) {
  const std::string key = std::string(name) + "=";
  auto i = header.find(key);
  if (i == std::string_view::npos) return {};
  auto v = header.substr(i + key.size());
  if (!v.empty() && v.front() == '"') {
    v.remove_prefix(1);
    return std::string(v.substr(0, v.find('"')));
  }
  return std::string(v.substr(0, v.find_first_of("; \r\n")));
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// The part named "file" of a multipart body; nullopt when there is none.
std::optional<FilePart> file_part(std::string_view body, const std::string& boundary) {
  const std::string delimiter = "--" + boundary;
  std::size_t pos = body.find(delimiter);
  while (pos != std::string_view::npos) {
    pos += delimiter.size();
    if (body.substr(pos, 2) == "--") return std::nullopt;  // closing delimiter
    const auto head_end = body.find("\r\n\r\n", pos);
    const auto next = body.find("\r\n" + delimiter, pos);
    if (head_end == std::string_view::npos || next == std::string_view::npos) return std::nullopt;
    const auto head = lower(body.substr(pos, head_end - pos));
    const auto raw_head = body.substr(pos, head_end - pos);
    if (header_param(head, "name") == "file") {
      FilePart f;
      f.file_name = header_param(raw_head, "filename");
      if (auto ct = head.find("content-type:"); ct != std::string::npos) {
        auto v = std::string_view(head).substr(ct + 13);
        v.remove_prefix(std::min(v.find_first_not_of(' '), v.size()));
        f.content_type = std::string(v.substr(0, v.find_first_of("\r\n;")));
      }
      f.bytes = std::string(body.substr(head_end + 4, next - head_end - 4));
      return f;
    }
    pos = next + 2;
  }
  return std::nullopt;
}

// The evidence types Klarna accepts, by content type, extension and magic bytes.
struct FileType {
  std::string_view content_type, extension, magic;
};
constexpr FileType kFileTypes[] = {
    {"application/pdf", ".pdf", "%PDF"},
    {"image/jpeg", ".jpg", "\xFF\xD8\xFF"},
    {"image/jpeg", ".jpeg", "\xFF\xD8\xFF"},
    {"image/png", ".png", "\x89PNG"},
    {"application/vnd.openxmlformats-officedocument.wordprocessingml.document", ".docx",
     "PK\x03\x04"},
};

const FileType* file_type(const FilePart& f) {
  const std::string name = lower(f.file_name);
  for (const auto& t : kFileTypes) {
    const bool named =
        f.content_type == t.content_type ||
        (name.size() >= t.extension.size() &&
         name.compare(name.size() - t.extension.size(), std::string::npos, t.extension) == 0);
    if (named && f.bytes.rfind(t.magic, 0) == 0) return &t;
  }
  return nullptr;
}

// Each attachments[] entry must name an attachment of this dispute.
std::optional<ApiResponse> check_attachments(const Dispute& d, const Body& body, bool required) {
  auto list = body.child("attachments");
  simdjson::dom::array items;
  if (!list || list->get_array().get(items) != simdjson::SUCCESS) {
    if (required) return invalid("attachments", "at least one attachment is required");
    return std::nullopt;
  }
  if (required && items.size() == 0) {
    return invalid("attachments", "at least one attachment is required");
  }
  for (auto item : items) {
    auto id = Body::str(item, "payment_dispute_attachment_id");
    if (!id || !d.attachments.count(*id)) {
      return invalid("attachments", "unknown payment_dispute_attachment_id");
    }
  }
  return std::nullopt;
}

std::optional<ApiResponse> check_information(const Body& body) {
  auto info = body.str("additional_information");
  if (info && info->size() > kMaxAdditionalInformation) {
    return invalid("additional_information", "at most 5000 characters");
  }
  return std::nullopt;
}

bool in_range(std::int64_t v, const std::string& from, const std::string& to) {
  return (from.empty() || rfc3339_ms(v) >= from) && (to.empty() || rfc3339_ms(v) < to);
}

}  // namespace

// A request under a configured prefix is rewritten to the canonical
// /v2/accounts/{account}/payment/disputes/… form; with a custom prefix the
// default one is not served.
std::vector<std::string> SimApi::Impl::canonical_dispute_path(std::vector<std::string> segs) const {
  if (opt.dispute_path_prefix == kDefaultDisputePathPrefix) return segs;
  const auto is_default = segs.size() >= 5 && segs[0] == "v2" && segs[1] == "accounts" &&
                          segs[3] == "payment" && segs[4] == "disputes";
  if (is_default) return {"v2", "not-served-dispute-prefix"};
  const auto prefix = prefix_segments(opt.dispute_path_prefix);
  if (segs.size() < prefix.size()) return segs;
  std::string account = opt.account_id;
  for (std::size_t i = 0; i < prefix.size(); ++i) {
    if (prefix[i] == "{account}") {
      account = segs[i];
    } else if (prefix[i] != segs[i]) {
      return segs;
    }
  }
  std::vector<std::string> out{"v2", "accounts", account, "payment", "disputes"};
  out.insert(out.end(), segs.begin() + static_cast<std::ptrdiff_t>(prefix.size()), segs.end());
  return out;
}

std::size_t SimApi::body_limit(std::string_view method, std::string_view target,
                               std::size_t fallback) const {
  const auto route = match_route(method, impl_->canonical_dispute_path(split_path(target)));
  if (route.name != "payment.disputes.attachments.upload") return fallback;
  return std::max(fallback, kAttachmentBodyLimit);
}

ApiResponse SimApi::Impl::dispute_op(const Route& route, const ApiRequest& req, const Body& body) {
  const auto& n = route.name;
  if (n == "payment.disputes.list") return list_disputes(route, req);
  auto it = disputes.find(route.ids.at(0));
  if (it == disputes.end() || it->second.account != route.account) return not_found("dispute");
  Dispute& d = it->second;
  if (n == "payment.disputes.read") return json_response(200, render_dispute(d));
  if (n == "payment.disputes.accept-loss") {
    if (d.state != DisputeState::initiated && d.state != DisputeState::pre_arbitration) {
      return conflict("accept-loss is possible in INITIATED or PRE_ARBITRATION only");
    }
    move_dispute(d, DisputeState::closed, "LOST");
    return json_response(202, render_dispute(d));
  }
  if (n == "payment.disputes.attachments.upload") return upload_attachment(d, req);
  if (n == "payment.disputes.represent") return represent(d, body);
  if (n == "payment.disputes.appeal") return appeal(d, body);
  if (n == "payment.disputes.attachments.download") {
    return download_attachment(d, route.ids.at(1));
  }
  return not_found("route");
}

// ?state&payment_transaction_id&opened_at_start&opened_at_end, oldest first;
// pages of `size` (1–100, default 20) continued with `page_token`.
ApiResponse SimApi::Impl::list_disputes(const Route& route, const ApiRequest& req) const {
  const auto state = query_param(req.target, "state");
  const auto tx = query_param(req.target, "payment_transaction_id");
  const auto from = query_param(req.target, "opened_at_start");
  const auto to = query_param(req.target, "opened_at_end");
  const auto size_text = query_param(req.target, "size");
  const int size = size_text.empty() ? 20 : std::clamp(std::atoi(size_text.c_str()), 1, 100);
  const auto token = query_param(req.target, "page_token");
  std::vector<const Dispute*> found;
  for (const auto& [id, d] : disputes) {
    if (d.account != route.account || (!tx.empty() && d.transaction_id != tx)) continue;
    if (!state.empty() && dispute_state_name(d.state) != state) continue;
    if (in_range(d.created_at, from, to)) found.push_back(&d);
  }
  std::sort(found.begin(), found.end(), [](auto* a, auto* b) { return a->seq < b->seq; });
  const std::size_t start = token.empty() ? 0 : std::strtoull(token.c_str(), nullptr, 10);
  JsonWriter w;
  w.begin_object().key("disputes").begin_array();
  for (std::size_t i = start; i < found.size() && i < start + size; ++i) {
    w.begin_object();
    write_dispute_fields(w, *found[i]);
    w.end_object();
  }
  w.end_array().key("pagination").begin_object().field("count", found.size());
  if (start + size < found.size()) w.field("next_page_token", std::to_string(start + size));
  w.end_object().end_object();
  return json_response(200, w.take());
}

// Evidence while the partner may still act: INITIATED (to represent) or
// PRE_ARBITRATION (to appeal).
ApiResponse SimApi::Impl::upload_attachment(Dispute& d, const ApiRequest& req) {
  if (d.state != DisputeState::initiated && d.state != DisputeState::pre_arbitration) {
    return conflict("Evidence can be uploaded in INITIATED or PRE_ARBITRATION only");
  }
  const auto content_type = req.header("content-type");
  const auto boundary = header_param(content_type, "boundary");
  if (lower(content_type).rfind("multipart/form-data", 0) != 0 || boundary.empty()) {
    return invalid("Content-Type", "must be multipart/form-data with a boundary");
  }
  auto f = file_part(req.body, boundary);
  if (!f) return invalid("file", "a multipart part named file is required");
  if (f->bytes.size() > kMaxAttachmentBytes) {
    return klarna_error(413, "INPUT_ERROR", "PAYLOAD_TOO_LARGE", "The file exceeds 7 MB");
  }
  const FileType* type = file_type(*f);
  if (type == nullptr) return invalid("file", "must be a PDF, JPG, PNG or DOCX file");
  DisputeAttachment a{"krn:payment:eu1:dispute-attachment:" + uuid(), f->file_name,
                      std::string(type->content_type), std::move(f->bytes), now()};
  JsonWriter w;
  w.begin_object().field("payment_dispute_attachment_id", a.id).field("file_name", a.file_name);
  w.field("content_type", a.content_type).field("size", a.bytes.size()).end_object();
  d.attachments.emplace(a.id, std::move(a));
  return json_response(201, w.take());
}

// INITIATED → REPRESENTMENT, with at least one uploaded attachment.
ApiResponse SimApi::Impl::represent(Dispute& d, const Body& body) {
  if (d.state != DisputeState::initiated) {
    return conflict("A dispute can be represented in INITIATED only");
  }
  if (auto bad = check_attachments(d, body, true)) return *bad;
  if (auto bad = check_information(body)) return *bad;
  auto refund = body.integer("partner_proposed_refund_amount");
  if (refund && (*refund < 0 || *refund > d.amount)) {
    return invalid("partner_proposed_refund_amount", "must be between 0 and the disputed amount");
  }
  d.additional_information = body.str("additional_information").value_or("");
  d.partner_proposed_refund_amount = refund;
  move_dispute(d, DisputeState::representment);
  return json_response(201, render_dispute(d));
}

// PRE_ARBITRATION → ARBITRATION, with additional information or attachments.
ApiResponse SimApi::Impl::appeal(Dispute& d, const Body& body) {
  if (d.state != DisputeState::pre_arbitration) {
    return conflict("A dispute can be appealed in PRE_ARBITRATION only");
  }
  if (auto bad = check_attachments(d, body, false)) return *bad;
  if (auto bad = check_information(body)) return *bad;
  if (!body.str("additional_information") && !body.child("attachments")) {
    return invalid("additional_information", "an appeal needs information or attachments");
  }
  d.additional_information = body.str("additional_information").value_or("");
  move_dispute(d, DisputeState::arbitration);
  return json_response(201, render_dispute(d));
}

ApiResponse SimApi::Impl::download_attachment(const Dispute& d,
                                              const std::string& attachment_id) const {
  auto it = d.attachments.find(attachment_id);
  if (it == d.attachments.end()) return not_found("attachment");
  ApiResponse r{200, {}, it->second.bytes};
  r.headers.emplace_back("Content-Type", it->second.content_type);
  r.headers.emplace_back("Content-Disposition",
                         "attachment; filename=\"" + it->second.file_name + "\"");
  return r;
}

// POST /_sim/disputes/{id}/extend {"deadline":"representment"|"arbitration",
// "extend_by_ms" (default 7 days), "shape":"current"|"legacy"}: moves the
// deadline the dispute's state has and announces it as Klarna does.
ApiResponse SimApi::Impl::extend_dispute_deadline(const std::string& id, const Body& body) {
  auto it = disputes.find(id);
  if (it == disputes.end()) return not_found("dispute");
  Dispute& d = it->second;
  const auto deadline =
      body.str("deadline")
          .value_or(d.state == DisputeState::pre_arbitration ? "arbitration" : "representment");
  const auto shape = body.str("shape").value_or("current");
  if (deadline != "representment" && deadline != "arbitration") {
    return invalid("deadline", "representment or arbitration");
  }
  if (shape != "current" && shape != "legacy") return invalid("shape", "current or legacy");
  const bool rep = deadline == "representment";
  if (d.state != (rep ? DisputeState::initiated : DisputeState::pre_arbitration)) {
    return conflict("The " + deadline + " deadline runs in " +
                    (rep ? "INITIATED" : "PRE_ARBITRATION") + " only");
  }
  auto& field = rep ? d.representment_expires_at : d.arbitration_expires_at;
  const std::int64_t previous = field;
  field += std::max<std::int64_t>(1, body.integer("extend_by_ms").value_or(7 * kDay));
  d.updated_at = now();
  auto write_deadline = [&](JsonWriter& w, std::int64_t at) {
    if (shape == "legacy") {
      w.field("evidence_response_deadline_at", rfc3339_ms(at));
    } else if (rep) {
      w.key("representment").begin_object().field("expires_at", rfc3339_ms(at)).end_object();
    } else {
      w.field("arbitration_expires_at", rfc3339_ms(at));
    }
  };
  JsonWriter w;
  w.begin_object();
  write_dispute_fields(w, d);
  w.key("updated_fields").begin_object();
  write_deadline(w, field);
  w.end_object().key("previous_fields").begin_object();
  write_deadline(w, previous);
  w.end_object().end_object();
  emit("payment.dispute.updated." + deadline + "-deadline-extended", d.id, w.take(), d.account);
  return json_response(200, render_dispute(d));
}

}  // namespace kpay::sim
