// The processor's part of signed commands: the senders' keys, loaded at start,
// watched, reloaded on SIGHUP, and handed to the batch applier.
#include "kpay/processor/consumer.hpp"

namespace kpay::processor {

void Processor::secure_commands(core::Registry& registry) {
  if (!settings_.commands) return;
  const auto& policy = *settings_.commands;
  sender_keys_ = std::make_unique<SenderKeySource>(policy.senders_database, policy.senders_poll);
  sender_keys_->start_watching();
  if (policy.allow_unsigned) {
    log_.warn(
        "commands.allow_unsigned = true: UNSIGNED COMMANDS ARE EXECUTED; anyone who can "
        "write to the commands topic can move money. For demos and tests only",
        {{"topic", settings_.topics.commands}});
  }
  auto security = std::make_shared<CommandSecurity>();
  security->policy = policy;
  security->keys = [keys = sender_keys_.get()] { return keys->current(); };
  applier_.secure_commands(std::move(security));
  registry.gauge_callback("kpay_processor_sender_keys_active",
                          "Active command sender keys loaded (commands.senders_database).", {},
                          [keys = sender_keys_.get()] {
                            return std::vector<core::GaugeSample>{
                                {{}, static_cast<double>(keys->current()->active_keys())}};
                          });
  registry
      .gauge("kpay_processor_commands_unsigned_allowed",
             "1 when commands.allow_unsigned lets unsigned commands through.")
      .with({})
      .set(policy.allow_unsigned ? 1 : 0);
}

bool Processor::reload_sender_keys() {
  return !sender_keys_ || sender_keys_->reload();
}

}  // namespace kpay::processor
