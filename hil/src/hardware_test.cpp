// Tests against a real reader. They run only when CITYCARD_NFC_DEVICE names one, e.g.
//   CITYCARD_NFC_DEVICE=pn532_uart:/dev/ttyUSB0 ctest -R Hardware
// and skip (never fail) otherwise. See hil/README.md, "Bench".
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "citycard/hil/nfc.h"
#include "citycard/hil/nfc_tools.h"

namespace citycard::hil {
namespace {

std::string device() {
  const char* d = std::getenv("CITYCARD_NFC_DEVICE");
  return d ? d : "";
}

#define REQUIRE_READER()                                                                    \
  if (device().empty())                                                                     \
  GTEST_SKIP() << "no real reader: set CITYCARD_NFC_DEVICE (e.g. pn532_uart:/dev/ttyUSB0, " \
                  "pn53x_usb:, acr122_usb:) to run this test"

TEST(Hardware, TheReaderOpensAndListsTheField) {
  REQUIRE_READER();
  tools::ListOptions options;
  options.connstrings = {device()};
  Result<std::vector<tools::ReaderListing>> readers = tools::list(options);
  ASSERT_TRUE(readers) << readers.status().to_string();
  ASSERT_EQ(readers->size(), 1u);
  EXPECT_TRUE((*readers)[0].status) << (*readers)[0].status.to_string();
  EXPECT_FALSE((*readers)[0].name.empty());
  for (const CardIdentity& c : (*readers)[0].cards)
    std::printf("card in the field: %s\n", c.to_string().c_str());
}

TEST(Hardware, TheCardOnTheReaderCanBeRead) {
  REQUIRE_READER();
  tools::ReadOptions options;
  options.connstring = device();
  Result<tools::CardReading> r = tools::read(options);
  if (!r && r.status().code() == Errc::kNotFound)
    GTEST_SKIP() << "no card on the reader: " << r.status().to_string();
  ASSERT_TRUE(r) << r.status().to_string();
  std::printf("card: %s\n", r->card.to_string().c_str());
  if (r->purse)
    std::printf("purse balance: %u fen, %zu records\n", r->purse->balance_fen,
                r->purse->records.size());
  for (const auto& s : r->sectors)
    std::printf("sector %u: %s\n", s.sector, s.key_type ? "opened" : "no key");
}

}  // namespace
}  // namespace citycard::hil
