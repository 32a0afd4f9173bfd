// klarnactl disputes list|show|due: views of the disputes in the processor's
// state store (processor.database): state, framework, outcome, money, every
// deadline with its history, and what is due within a window or already
// overdue — the same rule the processor's deadline watcher uses
// (kpay/processor/dispute_deadlines.hpp). `list --remote` / `show --remote`
// ask Klarna instead.
//
// Operations: accept-loss, represent and appeal are the `dispute_*` commands on
// klarna.commands (the processor checks the state, calls Klarna once and
// publishes the result; --wait follows it). Evidence is a file, not a Kafka
// message: `upload` sends it to Klarna directly (type by signature and the
// 7 MB limit checked first; the idempotency key is derived from the dispute
// and the file's bytes, so a repeated upload of one file is one attachment),
// and `download` fetches one. Both use the processor's `klarna.*` settings and
// `disputes.api_path_prefix`.

#include <simdjson.h>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <sstream>

#include "ctl_support.hpp"
#include "klarnactl.hpp"
#include "kpay/core/json_writer.hpp"
#include "kpay/core/log.hpp"
#include "kpay/core/percent_encode.hpp"
#include "kpay/klarna/signature.hpp"
#include "kpay/processor/dispute_deadlines.hpp"
#include "kpay/processor/events.hpp"
#include "kpay/processor/follow_ups.hpp"
#include "kpay/processor/outbox_worker.hpp"
#include "kpay/storage/defaults.hpp"
#include "kpay/storage/store.hpp"

namespace kpay::ctl {

namespace {

std::string when(const std::optional<std::int64_t>& ms) {
  return ms ? core::rfc3339_ms(*ms) : "-";
}
std::string text(const std::optional<std::string>& s) {
  return s ? *s : "-";
}
std::string money(const std::optional<std::int64_t>& amount,
                  const std::optional<std::string>& currency) {
  if (!amount) return "-";
  return std::to_string(*amount) + (currency ? " " + *currency : "");
}

template <class T>
void opt_field(core::JsonWriter& w, std::string_view k, const std::optional<T>& v) {
  w.key(k);
  v ? w.value(*v) : w.null();
}
void opt_time(core::JsonWriter& w, std::string_view k, const std::optional<std::int64_t>& ms) {
  opt_field(w, k, ms ? std::optional(core::rfc3339_ms(*ms)) : std::nullopt);
}

// "now" for `due`: --now (RFC 3339, e.g. simulated time) or the clock.
std::int64_t now_ms(const std::string& now) {
  if (now.empty()) return processor::DisputeDeadlineWatcher::system_now_ms();
  return parse_time_option("--now", now);
}

void dispute_json(core::JsonWriter& w, const storage::DisputeRow& d) {
  w.begin_object()
      .field("payment_dispute_id", d.id)
      .field("framework", storage::to_string(d.framework));
  w.field("framework_inferred", d.framework_inferred);
  opt_field(w, "state", d.state);
  w.field("state_as_of", core::rfc3339_ms(d.state_as_of_ms));
  opt_field(w, "payment_transaction_id", d.payment_transaction_id);
  opt_field(w, "payment_capture_id", d.payment_capture_id);
  opt_field(w, "reason", d.reason);
  opt_field(w, "amount", d.amount);
  opt_field(w, "currency", d.currency);
  opt_field(w, "withheld_amount", d.withheld_amount);
  opt_field(w, "returned_amount", d.returned_amount);
  opt_field(w, "fee_amount", d.fee_amount);
  opt_field(w, "outcome", d.outcome);
  opt_field(w, "outcome_detailed", d.outcome_detailed);
  opt_time(w, "closed_at", d.closed_at_ms);
  opt_time(w, "representment_expires_at", d.representment_expires_at_ms);
  opt_time(w, "arbitration_expires_at", d.arbitration_expires_at_ms);
  opt_time(w, "evidence_response_deadline_at", d.evidence_response_deadline_ms);
}

void print_row(const storage::DisputeRow& d) {
  std::cout << std::left << std::setw(32) << text(d.state) << std::setw(8) << d.framework
            << std::setw(14) << money(d.amount, d.currency) << std::setw(6) << text(d.outcome)
            << " " << d.id << "\n";
}

void list(const GlobalOptions& g, std::size_t limit, bool json) {
  auto store = open_state_store(g, false);
  for (const auto& d : store->list_disputes(limit)) {
    if (!json) {
      print_row(d);
      continue;
    }
    core::JsonWriter w;
    dispute_json(w, d);
    w.end_object();
    std::cout << w.str() << "\n";
  }
}

void history_json(core::JsonWriter& w, const std::vector<storage::DisputeDeadlineRow>& rows) {
  w.key("deadline_history").begin_array();
  for (const auto& h : rows) {
    w.begin_object().field("deadline", h.kind).field("due_at", core::rfc3339_ms(h.deadline_ms));
    w.field("as_of", core::rfc3339_ms(h.as_of_ms)).field("event_id", h.event_id);
    w.field("event_type", h.event_type).field("field", h.field).end_object();
  }
  w.end_array();
}

void print_dispute(const storage::DisputeRow& d,
                   const std::vector<storage::DisputeDeadlineRow>& deadlines) {
  std::cout << "dispute " << d.id << "\n  state: " << text(d.state) << " (" << d.framework
            << (d.framework_inferred ? ", inferred" : "") << ") as of "
            << core::rfc3339_ms(d.state_as_of_ms)
            << "\n  transaction: " << text(d.payment_transaction_id)
            << "  capture: " << text(d.payment_capture_id) << "\n  reason: " << text(d.reason)
            << "  outcome: " << text(d.outcome) << " " << text(d.outcome_detailed)
            << "  closed: " << when(d.closed_at_ms)
            << "\n  disputed: " << money(d.amount, d.currency)
            << "  withheld: " << money(d.withheld_amount, d.currency)
            << "  returned: " << money(d.returned_amount, d.currency)
            << "  fee: " << money(d.fee_amount, d.currency) << "\n  deadlines: representment "
            << when(d.representment_expires_at_ms) << "  arbitration "
            << when(d.arbitration_expires_at_ms) << "  evidence response "
            << when(d.evidence_response_deadline_ms) << "\n  deadline history (" << deadlines.size()
            << "):\n";
  for (const auto& h : deadlines) {
    std::cout << "    " << core::rfc3339_ms(h.as_of_ms) << "  " << std::left << std::setw(18)
              << h.kind << core::rfc3339_ms(h.deadline_ms) << "  " << h.field << "  "
              << h.event_type << " event_id=" << h.event_id << "\n";
  }
}

void show(const GlobalOptions& g, const std::string& id, bool json) {
  auto store = open_state_store(g, false);
  auto d = store->find_dispute(id);
  if (!d) throw CommandFailed("no dispute with id " + id);
  const auto deadlines = store->dispute_deadlines(id);
  const auto history = store->history(id);
  if (!json) {
    print_dispute(*d, deadlines);
    std::cout << "  events: " << history.size() << " (klarnactl payments show " << id
              << " for the full history)\n";
    return;
  }
  core::JsonWriter w;
  dispute_json(w, *d);
  history_json(w, deadlines);
  w.field("events", static_cast<std::int64_t>(history.size()));
  w.end_object();
  std::cout << w.str() << "\n";
}

// Every open dispute, read in pages (no cap however many there are).
std::vector<storage::DisputeRow> all_open_disputes(storage::Store& store) {
  constexpr std::size_t kPage = 10'000;
  std::vector<storage::DisputeRow> out;
  std::optional<std::string> after;
  for (;;) {
    auto page = store.open_disputes_after(after, kPage);
    const bool last = page.size() < kPage;
    for (auto& d : page) out.push_back(std::move(d));
    if (last) return out;
    after = out.back().id;
  }
}

// Deadlines the partner must meet, nearest first: overdue ones and those
// within the window. Exit 0 either way (a report, not a check).
void due(const GlobalOptions& g, std::int64_t window_hours, const std::string& now_text,
         bool json) {
  const std::int64_t now = now_ms(now_text);  // a bad --now is a usage error (2)
  auto store = open_state_store(g, false);
  const std::int64_t window_ms = window_hours * 3'600'000;
  const auto open = all_open_disputes(*store);
  const auto deadlines = processor::actionable_deadlines(open);
  const auto stats = processor::summarize(deadlines, now, window_ms);
  if (!json) {
    std::cout << "now " << core::rfc3339_ms(now) << ", window " << window_hours
              << " h: " << stats.due_within_window << " due, " << stats.overdue << " overdue\n";
  }
  for (const auto& d : deadlines) {
    if (d.deadline_ms >= now + window_ms) break;
    const bool overdue = d.deadline_ms < now;
    const std::int64_t left_s = (d.deadline_ms - now) / 1000;
    if (!json) {
      std::cout << (overdue ? "OVERDUE " : "due     ") << core::rfc3339_ms(d.deadline_ms) << "  "
                << std::left << std::setw(18) << d.kind << std::setw(32)
                << (d.state.empty() ? "-" : d.state) << d.dispute_id << "\n";
      continue;
    }
    core::JsonWriter w;
    w.begin_object().field("payment_dispute_id", d.dispute_id).field("deadline", d.kind);
    w.field("due_at", core::rfc3339_ms(d.deadline_ms)).field("seconds_left", left_s);
    w.field("overdue", overdue).field("state", d.state).field("framework", d.framework);
    opt_field(w, "amount", d.amount);
    opt_field(w, "currency", d.currency);
    w.end_object();
    std::cout << w.str() << "\n";
  }
}

// ---- Klarna's Dispute API, directly (evidence files, operators' reads) -------------

constexpr std::size_t kMaxEvidenceBytes = 7'000'000;  // "7 MB" (docs/klarna/PAYMENTS-API.md)

// The evidence types Klarna accepts, recognised by their first bytes.
struct EvidenceType {
  std::string_view magic, content_type, name;
};
constexpr EvidenceType kEvidenceTypes[] = {
    {"%PDF", "application/pdf", "PDF"},
    {"\xFF\xD8\xFF", "image/jpeg", "JPEG"},
    {"\x89PNG\r\n\x1A\n", "image/png", "PNG"},
    {"PK\x03\x04", "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
     "DOCX"},
};

const EvidenceType* evidence_type(std::string_view bytes) {
  for (const auto& t : kEvidenceTypes) {
    if (bytes.starts_with(t.magic)) return &t;
  }
  return nullptr;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw CommandFailed("cannot read " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A file name safe inside a quoted multipart header.
std::string safe_file_name(const std::string& path) {
  std::string name = std::filesystem::path(path).filename().string();
  for (auto& c : name) {
    if (c == '"' || c == '\\' || static_cast<unsigned char>(c) < 0x20) c = '_';
  }
  return name.empty() ? "evidence" : name;
}

struct Multipart {
  std::string content_type, body;
};

// multipart/form-data (RFC 7578) with one part named "file". The boundary is
// derived from the file's hash, so the same file gives the same body (a repeat
// with the same idempotency key is then Klarna's replay, not a conflict).
Multipart file_form(const std::string& file_name, std::string_view content_type,
                    std::string_view bytes, std::string_view bytes_hash) {
  const std::string boundary = "kpay-evidence-" + std::string(bytes_hash.substr(0, 32));
  Multipart m;
  m.content_type = "multipart/form-data; boundary=" + boundary;
  m.body = "--" + boundary + "\r\nContent-Disposition: form-data; name=\"file\"; filename=\"" +
           file_name + "\"\r\nContent-Type: " + std::string(content_type) + "\r\n\r\n";
  m.body.append(bytes);
  m.body += "\r\n--" + boundary + "--\r\n";
  return m;
}

// The Dispute API's root for one account, over klarnactl's Klarna client
// (klarna_api.cpp: the processor's [klarna] settings and credentials rule).
class DisputeApi {
 public:
  DisputeApi(const GlobalOptions& g, const std::string& account)
      : api_(g),
        root_(processor::dispute_api_root(processor::follow_up_settings_from_config(g.load()),
                                          account)) {}
  std::string path(const std::string& dispute_id, std::string_view rest = "") const {
    std::string p = root_;
    if (!dispute_id.empty()) p += "/" + core::percent_encode(dispute_id);
    return p + std::string(rest);
  }
  // Sent with the same key until an answer that is not retryable (five times
  // at most), so an answer lost on the way is fetched again, not repeated;
  // CommandFailed (exit 1) with Klarna's error fields unless it answered 2xx.
  klarna::Answer call(klarna::Call c) { return api_.expect_success(std::move(c), 5); }

 private:
  KlarnaApi api_;
  std::string root_;
};

// --account, else the dispute's account in the local store (its events'
// subject_account_id), else its transaction's.
std::string account_of(const GlobalOptions& g, const std::string& account,
                       const std::string& dispute_id) {
  if (!account.empty()) return account;
  auto store = open_state_store(g, false);
  auto d = store->find_dispute(dispute_id);
  if (d && d->account_id) return *d->account_id;
  std::optional<storage::PaymentTransactionRow> t;
  if (d && d->payment_transaction_id) t = store->find_transaction(*d->payment_transaction_id);
  if (!t || !t->account_id) {
    throw CommandFailed("the partner account of " + dispute_id + " is not known; give --account");
  }
  return *t->account_id;
}

struct UploadOptions {
  std::string dispute_id, file, account;
  bool json = false;
};

void upload(const GlobalOptions& g, const UploadOptions& o) {
  const std::string bytes = read_file(o.file);
  if (bytes.size() > kMaxEvidenceBytes) {
    throw CommandFailed(o.file + " has " + std::to_string(bytes.size()) +
                        " bytes; Klarna accepts at most 7 MB (7000000 bytes)");
  }
  const EvidenceType* type = evidence_type(bytes);
  if (!type) throw CommandFailed(o.file + " is not a PDF, JPEG, PNG or DOCX file");
  DisputeApi api(g, account_of(g, o.account, o.dispute_id));
  const std::string hash = klarna::sha256_hex(bytes);
  auto form = file_form(safe_file_name(o.file), type->content_type, bytes, hash);
  klarna::Call c;
  c.method = "POST";
  c.path = api.path(o.dispute_id, "/attachments");
  c.body = std::move(form.body);
  c.content_type = std::move(form.content_type);
  c.idempotency_key = processor::idempotency_key("dispute_upload", o.dispute_id, hash);
  c.timeout = std::chrono::seconds(120);
  auto a = api.call(std::move(c));
  const auto id = json_field(a.body, "payment_dispute_attachment_id");
  if (id.empty()) throw CommandFailed("Klarna's answer names no payment_dispute_attachment_id");
  if (o.json) {
    std::cout << a.body << "\n";
  } else {
    std::cout << id << "\n";
  }
}

struct DownloadOptions {
  std::string dispute_id, attachment_id, output, account;
};

void download(const GlobalOptions& g, const DownloadOptions& o) {
  DisputeApi api(g, account_of(g, o.account, o.dispute_id));
  klarna::Call c;
  c.method = "GET";
  c.path =
      api.path(o.dispute_id, "/attachments/" + core::percent_encode(o.attachment_id) + "/download");
  c.timeout = std::chrono::seconds(120);
  auto a = api.call(std::move(c));
  std::ofstream out(o.output, std::ios::binary | std::ios::trunc);
  if (!out.write(a.body.data(), static_cast<std::streamsize>(a.body.size()))) {
    throw CommandFailed("cannot write " + o.output);
  }
  std::cout << "wrote " << a.body.size() << " bytes to " << o.output << "\n";
}

// `show --remote`: Klarna's view of one dispute, as Klarna sends it.
void show_remote(const GlobalOptions& g, const std::string& id, const std::string& account) {
  DisputeApi api(g, account_of(g, account, id));
  klarna::Call c;
  c.method = "GET";
  c.path = api.path(id);
  std::cout << api.call(std::move(c)).body << "\n";
}

struct RemoteListOptions {
  std::string account, state, transaction;
  std::size_t limit = 50;
  bool json = false;
};

// `list --remote`: Klarna's list for one account, followed page by page.
void list_remote(const GlobalOptions& g, const RemoteListOptions& o) {
  if (o.account.empty()) throw CLI::ValidationError("--account", "required with --remote");
  DisputeApi api(g, o.account);
  std::string token;
  std::size_t printed = 0;
  do {
    std::string query = "?size=" + std::to_string(std::min<std::size_t>(100, o.limit));
    if (!o.state.empty()) query += "&state=" + core::percent_encode(o.state);
    if (!o.transaction.empty()) {
      query += "&payment_transaction_id=" + core::percent_encode(o.transaction);
    }
    if (!token.empty()) query += "&page_token=" + core::percent_encode(token);
    klarna::Call c;
    c.method = "GET";
    c.path = api.path("", query);
    const auto body = api.call(std::move(c)).body;
    simdjson::dom::parser p;
    simdjson::dom::element root;
    if (p.parse(body).get(root) != simdjson::SUCCESS) throw CommandFailed("unreadable answer");
    for (auto d : root["disputes"]) {
      if (printed++ >= o.limit) return;
      if (o.json) {
        std::cout << simdjson::minify(d) << "\n";
        continue;
      }
      std::cout << std::left << std::setw(32) << json_field(simdjson::minify(d), "state")
                << json_field(simdjson::minify(d), "payment_dispute_id") << "\n";
    }
    std::string_view next;
    token = root["pagination"]["next_page_token"].get_string().get(next) == simdjson::SUCCESS
                ? std::string(next)
                : std::string();
  } while (!token.empty() && printed < o.limit);
}

// ---- the dispute_* commands -----------------------------------------------------

struct EvidenceOptions {
  std::string dispute_id;
  std::vector<std::string> attachments;  // ID or ID=description
  std::optional<std::string> information, information_file;
  std::optional<std::int64_t> refund;
};

void write_attachments(core::JsonWriter& w, const std::vector<std::string>& attachments) {
  if (attachments.empty()) return;
  w.key("attachments").begin_array();
  for (const auto& a : attachments) {
    const auto eq = a.find('=');
    w.begin_object().field("payment_dispute_attachment_id", a.substr(0, eq));
    if (eq != std::string::npos) w.field("description", a.substr(eq + 1));
    w.end_object();
  }
  w.end_array();
}

std::string dispute_command(const SendOptions& s, std::string_view type, const EvidenceOptions& e) {
  core::JsonWriter w;
  w.begin_object().field("command_id", s.command_id).field("type", type);
  w.field("payment_dispute_id", e.dispute_id);
  write_attachments(w, e.attachments);
  auto info = e.information;
  if (e.information_file) info = read_file(*e.information_file);
  if (info) w.field("additional_information", *info);
  if (e.refund) w.field("partner_proposed_refund_amount", *e.refund);
  w.end_object();
  return w.take();
}

void register_operation(CLI::App& disputes, const GlobalOptions& g, const std::string& name,
                        const std::string& type, const std::string& help, bool evidence,
                        bool refund) {
  auto s = std::make_shared<SendOptions>();
  auto e = std::make_shared<EvidenceOptions>();
  auto* cmd = with_send_options(disputes.add_subcommand(name, help), *s);
  cmd->add_option("ID", e->dispute_id, "payment_dispute_id")->required();
  if (evidence) {
    cmd->add_option("--attachment", e->attachments,
                    "payment_dispute_attachment_id[=description] (repeatable; from `upload`)");
    auto* text = cmd->add_option("--information", e->information, "additional_information");
    cmd->add_option("--information-file", e->information_file, "additional_information, a file")
        ->excludes(text);
  }
  if (refund) {
    cmd->add_option("--refund", e->refund, "partner_proposed_refund_amount (minor units)");
  }
  cmd->callback([&g, s, e, type] {
    prepare(*s);
    send(g, *s, e->dispute_id, dispute_command(*s, type, *e));
  });
}

void register_direct_operations(CLI::App& disputes, const GlobalOptions& g) {
  auto u = std::make_shared<UploadOptions>();
  auto* up = disputes.add_subcommand(
      "upload",
      "Upload an evidence file to Klarna (PDF/JPEG/PNG/DOCX, at most 7 MB); prints "
      "its payment_dispute_attachment_id");
  up->add_option("ID", u->dispute_id, "payment_dispute_id")->required();
  up->add_option("FILE", u->file, "the evidence file")->required();
  up->add_option("--account", u->account, "partner account (default: from the local store)");
  up->add_flag("--json", u->json, "print Klarna's answer");
  up->callback([&g, u] { upload(g, *u); });

  auto d = std::make_shared<DownloadOptions>();
  auto* dl = disputes.add_subcommand("download", "Download an attachment of a dispute");
  dl->add_option("ID", d->dispute_id, "payment_dispute_id")->required();
  dl->add_option("ATTACHMENT_ID", d->attachment_id, "payment_dispute_attachment_id")->required();
  dl->add_option("--output,-o", d->output, "where to write the file")->required();
  dl->add_option("--account", d->account, "partner account (default: from the local store)");
  dl->callback([&g, d] { download(g, *d); });
}

}  // namespace

void register_disputes_commands(CLI::App& app, const GlobalOptions& global) {
  auto* disputes = app.add_subcommand(
      "disputes", "Disputes: deadlines, Klarna's view, evidence and the dispute_* commands");
  disputes->require_subcommand(1);

  auto* ls = disputes->add_subcommand("list", "Disputes, newest state first");
  auto limit = std::make_shared<std::size_t>(50);
  auto list_json = std::make_shared<bool>(false);
  add_limit(ls, *limit);
  ls->add_flag("--json", *list_json, "One JSON object per line");
  auto remote = std::make_shared<RemoteListOptions>();
  auto list_remote_flag = std::make_shared<bool>(false);
  ls->add_flag("--remote", *list_remote_flag, "Ask Klarna (needs --account)");
  ls->add_option("--account", remote->account, "--remote: the partner account");
  ls->add_option("--state", remote->state, "--remote: only this state");
  ls->add_option("--transaction", remote->transaction, "--remote: payment_transaction_id");
  ls->callback([&global, limit, list_json, remote, list_remote_flag] {
    if (!*list_remote_flag) {
      if (!remote->account.empty() || !remote->state.empty() || !remote->transaction.empty()) {
        throw CLI::ValidationError("--account/--state/--transaction", "only with --remote");
      }
      return list(global, *limit, *list_json);
    }
    remote->limit = *limit;
    remote->json = *list_json;
    list_remote(global, *remote);
  });

  auto* sh = disputes->add_subcommand("show", "One dispute: money, outcome, deadline history");
  auto id = std::make_shared<std::string>();
  auto show_json = std::make_shared<bool>(false);
  sh->add_option("ID", *id, "payment_dispute_id")->required();
  sh->add_flag("--json", *show_json, "Print one JSON document");
  auto show_remote_flag = std::make_shared<bool>(false);
  auto show_account = std::make_shared<std::string>();
  sh->add_flag("--remote", *show_remote_flag, "Klarna's view (JSON, as Klarna sends it)");
  sh->add_option("--account", *show_account, "--remote: partner account (default: local store)");
  sh->callback([&global, id, show_json, show_remote_flag, show_account] {
    if (*show_remote_flag) return show_remote(global, *id, *show_account);
    if (!show_account->empty()) throw CLI::ValidationError("--account", "only with --remote");
    show(global, *id, *show_json);
  });

  auto* du = disputes->add_subcommand(
      "due", "Deadlines to meet within the window, and overdue ones (nearest first)");
  auto hours = std::make_shared<std::int64_t>(48);
  auto now = std::make_shared<std::string>();
  auto due_json = std::make_shared<bool>(false);
  du->add_option("--window-hours", *hours, "How far ahead counts as due")
      ->check(CLI::Range(1, 720))
      ->capture_default_str();
  du->add_option("--now", *now, "Evaluate at this RFC 3339 time (default: the clock)");
  du->add_flag("--json", *due_json, "One JSON object per line");
  du->callback([&global, hours, now, due_json] { due(global, *hours, *now, *due_json); });

  register_direct_operations(*disputes, global);
  register_operation(*disputes, global, "accept-loss", "dispute_accept_loss",
                     "Accept the loss (command dispute_accept_loss; INITIATED or "
                     "PRE_ARBITRATION)",
                     false, false);
  register_operation(*disputes, global, "represent", "dispute_represent",
                     "Represent with uploaded evidence (command dispute_represent; INITIATED)",
                     true, true);
  register_operation(*disputes, global, "appeal", "dispute_appeal",
                     "Appeal (command dispute_appeal; PRE_ARBITRATION)", true, false);
}

}  // namespace kpay::ctl
