// Charts drawn by our code as inline SVG: axes with ticks, units and legends, no scripts, no
// external resources, so a report is one self-contained file.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace citycard::reports::svg {

struct Series {
  std::string name;
  std::vector<std::pair<double, double>> points;  // (x, y), x ascending
};

struct Axes {
  std::string title;
  std::string x_label;  // with the unit: "virtual time (min)"
  std::string y_label;  // "swipes per minute"
};

// Each series a polyline with its name in the legend. A series of one point is drawn as a dot.
std::string line_chart(const Axes& axes, const std::vector<Series>& series, int width = 720,
                       int height = 280);
// One bar per category.
std::string bar_chart(const Axes& axes, const std::vector<std::pair<std::string, double>>& bars,
                      int width = 720, int height = 280);

// A histogram: one bar per bin [from, to), bins in order and adjacent; each bar's width is
// even (bins are often log-spaced), labelled by its edges. For latency distributions.
struct Bin {
  double from = 0, to = 0;
  double count = 0;
};
std::string histogram(const Axes& axes, const std::vector<Bin>& bins, int width = 720,
                      int height = 280);

// Escapes &, <, >, " and ' for HTML/XML text and attributes.
std::string escape(const std::string& s);
// "1234567" -> "1,234,567"; fen -> "12,345.67".
std::string thousands(long long v);
std::string yuan(long long fen);

}  // namespace citycard::reports::svg
