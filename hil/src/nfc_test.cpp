#include "citycard/hil/nfc.h"

#include <gtest/gtest.h>

#include <string>

namespace citycard::hil {
namespace {

TEST(Nfc, LinksAgainstLibnfc18) {
  EXPECT_EQ(std::string(libnfc_version()).rfind("1.8", 0), 0u) << libnfc_version();
}

TEST(Nfc, OpeningAReaderThatIsNotThereIsAClearError) {
  auto ctx = NfcContext::create();
  ASSERT_TRUE(ctx.is_ok());
  auto r = (*ctx)->open("pn532_uart:/dev/citycard-no-such-tty");
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), Errc::kUnavailable);
  EXPECT_NE(r.status().message().find("citycard-no-such-tty"), std::string::npos);
  EXPECT_EQ((*ctx)->open(std::string(2000, 'x')).status().code(), Errc::kInvalidArgument);
}

}  // namespace
}  // namespace citycard::hil
