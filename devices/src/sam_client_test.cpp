#include "citycard/devices/sam_client.h"

#include <gtest/gtest.h>

#include "citycard/devices/psam.h"
#include "citycard/protocol/crypto.h"
#include "test_support.h"

namespace citycard::devices {
namespace {

namespace crypto = protocol::crypto;

TEST(PsamClient, OpenReadsTheTerminalIdAndSelectsTheDf) {
  Psam psam(testing::psam_image());
  std::vector<std::string> apdus;
  DirectLink link(psam, [&](const protocol::Command& c, const protocol::Response&) {
    apdus.push_back(c.to_string());
  });
  SamClient sam(link);
  Result<protocol::TerminalId> id = sam.open();
  ASSERT_TRUE(id.is_ok()) << id.status().to_string();
  EXPECT_EQ(*id, testing::kTerminal);
  EXPECT_EQ(apdus, (std::vector<std::string>{"00B0960006", "00A40000028011"}));
}

TEST(PsamClient, GeneralMacChainsLongInputAndEqualsTdesMac) {
  const protocol::PsamImage image = testing::psam_image();
  Psam psam(image);
  int blocks = 0;
  DirectLink link(psam, [&](const protocol::Command& c, const protocol::Response&) {
    if (c.ins == 0xFA) {
      ++blocks;
      EXPECT_LE(c.data.size(), SamClient::kMacBlockBytesMax);
    }
  });
  SamClient sam(link);
  ASSERT_TRUE(sam.open().is_ok());
  for (std::size_t n : {1u, 247u, 248u, 249u, 496u, 1000u}) {
    Bytes data(n);
    for (std::size_t i = 0; i < n; ++i) data[i] = static_cast<std::uint8_t>(i * 7 + n);
    blocks = 0;
    Result<protocol::Mac4> mac = sam.general_mac(data);
    ASSERT_TRUE(mac.is_ok()) << n << ": " << mac.status().to_string();
    EXPECT_EQ(to_hex(*mac), to_hex(crypto::tdes_mac(image.batch_key, data))) << n;
    EXPECT_EQ(blocks, static_cast<int>((n + 247) / 248)) << n;
  }
  EXPECT_EQ(sam.general_mac({}).status().code(), Errc::kInvalidArgument);
  EXPECT_EQ(sam.general_mac(Bytes(Psam::kMacInputBytesMax + 1)).status().code(), Errc::kTooLarge);
}

TEST(PsamClient, StatusWordsBecomeStatusesThatNameThem) {
  Psam psam(testing::psam_image());
  DirectLink link(psam);
  SamClient sam(link);
  Result<Mac1Output> refused = sam.mac1_for_purchase(Mac1Input{});
  ASSERT_FALSE(refused.is_ok());
  EXPECT_EQ(refused.status().code(), Errc::kRejected);
  EXPECT_NE(refused.status().message().find("6985"), std::string::npos)
      << refused.status().message();
  ASSERT_TRUE(sam.open().is_ok());
  Mac1Input in;
  in.key_version = 1;
  ASSERT_TRUE(sam.mac1_for_purchase(in).is_ok());
  EXPECT_EQ(sam.verify_mac2(protocol::Mac4{}).code(), Errc::kBadMac);
}

}  // namespace
}  // namespace citycard::devices
