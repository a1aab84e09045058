#include "citycard/reports/svg.h"

#include <gtest/gtest.h>

namespace citycard::reports::svg {
namespace {

TEST(Svg, LineChartHasAxesLabelsLegendAndOnePolylinePerSeries) {
  std::string s = line_chart({"T", "time (min)", "swipes"},
                             {{"a", {{0, 1}, {1, 5}}}, {"b<c", {{0, 2}, {1, 3}}}});
  EXPECT_NE(s.find("<svg"), std::string::npos);
  EXPECT_NE(s.find("time (min)"), std::string::npos);
  EXPECT_NE(s.find("b&lt;c"), std::string::npos);  // legend text escaped
  std::size_t n = 0, pos = 0;
  while ((pos = s.find("<polyline", pos)) != std::string::npos) ++n, ++pos;
  EXPECT_EQ(n, 2u);
}

TEST(Svg, BarChartDrawsOneBarPerCategory) {
  std::string s = bar_chart({"T", "route", "swipes"}, {{"R1", 3}, {"R2", 0}, {"R3", 7}});
  std::size_t n = 0, pos = 0;
  while ((pos = s.find("<rect", pos)) != std::string::npos) ++n, ++pos;
  EXPECT_EQ(n, 3u);
}

TEST(Svg, NumberFormatting) {
  EXPECT_EQ(thousands(1234567), "1,234,567");
  EXPECT_EQ(thousands(-1000), "-1,000");
  EXPECT_EQ(yuan(123456), "1,234.56");
  EXPECT_EQ(yuan(-5), "-0.05");
  EXPECT_EQ(escape("<a href=\"x\">&'"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
}

}  // namespace
}  // namespace citycard::reports::svg
