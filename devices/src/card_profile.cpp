#include "citycard/devices/card_profile.h"

namespace citycard::devices {
namespace {

CardProfile make_cjt166() {
  CardProfile p;
  p.name = "cjt166";
  p.family = protocol::Family::kCjt166;
  return p;
}

// Software DES takes tens of milliseconds per operation; a DEBIT runs four of them.
CardProfile make_slow(protocol::Family family) {
  CardProfile p;
  p.name = family == protocol::Family::kJtt978 ? "jtt978-slow" : "cjt166-slow";
  p.family = family;
  p.command.select_us = 6'000;
  p.command.read_us = 4'000;
  p.command.get_balance_us = 3'000;
  p.command.get_challenge_us = 5'000;
  p.command.verify_pin_us = 8'000;
  p.command.change_pin_us = 10'000;
  p.command.initialize_us = 40'000;
  p.command.update_capp_us = 4'000;
  p.command.debit_us = 130'000;
  p.command.credit_us = 90'000;
  p.command.prove_us = 4'000;
  p.command.application_block_us = 40'000;
  p.command.refused_us = 1'000;
  p.eeprom_write_us = 8'000;
  p.eeprom_page_bytes = 32;
  p.air.fsc_bytes = 32;
  p.air.fwi = 4;
  p.air.startup_us = 3'000;
  return p;
}

}  // namespace

const CardProfile& CardProfile::jtt978() {
  static const CardProfile p{};
  return p;
}
const CardProfile& CardProfile::cjt166() {
  static const CardProfile p = make_cjt166();
  return p;
}
const CardProfile& CardProfile::standard(protocol::Family family) {
  return family == protocol::Family::kJtt978 ? jtt978() : cjt166();
}
const CardProfile& CardProfile::slow(protocol::Family family) {
  static const CardProfile jtt = make_slow(protocol::Family::kJtt978);
  static const CardProfile cjt = make_slow(protocol::Family::kCjt166);
  return family == protocol::Family::kJtt978 ? jtt : cjt;
}

const PsamProfile& PsamProfile::standard() {
  static const PsamProfile p{};
  return p;
}
const PsamProfile& PsamProfile::slow() {
  static const PsamProfile p = [] {
    PsamProfile s;
    s.name = "psam-slow";
    s.mac1_us = 40'000;
    s.verify_mac2_us = 15'000;
    s.diversify_us = 25'000;
    s.general_mac_us = 10'000;
    s.general_mac_block_us = 2'000;
    s.eeprom_write_us = 8'000;
    s.contact.d = 1;  // no PPS: 9,600 bit/s
    return s;
  }();
  return p;
}

const M1Profile& M1Profile::standard() {
  static const M1Profile p{};
  return p;
}

}  // namespace citycard::devices
