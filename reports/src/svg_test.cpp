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
  EXPECT_EQ(n, 4u);  // three bars and the legend's swatch
  EXPECT_NE(s.find("class='label'>route</text>"), std::string::npos);
}

std::size_t count(const std::string& s, const std::string& what) {
  std::size_t n = 0, pos = 0;
  while ((pos = s.find(what, pos)) != std::string::npos) ++n, ++pos;
  return n;
}

TEST(Svg, HistogramDrawsOneBarPerBinWithEdgesAxesAndLegend) {
  const std::string s = histogram({"Latency", "latency (ms)", "requests"},
                                  {{0.5, 1, 10}, {1, 2, 30}, {2, 5, 0}, {5, 10, 2}});
  EXPECT_EQ(count(s, "<rect"), 5u);  // four bins and the legend's swatch
  EXPECT_NE(s.find("class='label'>latency (ms)</text>"), std::string::npos);
  EXPECT_NE(s.find("class='label'>requests</text>"), std::string::npos);
  EXPECT_NE(s.find("class='tick'>requests</text>"), std::string::npos);  // legend
  // Each bar names its bin, count and share; every edge is labelled, the last one too.
  EXPECT_NE(s.find("<title>1 to 2: 30 (71.43%)</title>"), std::string::npos);
  EXPECT_NE(s.find(">10</text>"), std::string::npos);
  // The tallest bar reaches the top gridline's value at most.
  EXPECT_NE(s.find(">30</text>"), std::string::npos);
}

TEST(Svg, LineChartMarksThePointsOfAShortSeries) {
  const std::string few = line_chart({"T", "x (/s)", "y (ms)"}, {{"p99", {{1, 2}, {2, 3}}}});
  EXPECT_EQ(count(few, "<circle"), 2u);
  std::vector<std::pair<double, double>> many;
  for (int i = 0; i < 100; ++i) many.emplace_back(i, i);
  EXPECT_EQ(count(line_chart({"T", "x", "y"}, {{"s", many}}), "<circle"), 0u);
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
