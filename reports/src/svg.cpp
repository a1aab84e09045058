#include "citycard/reports/svg.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

namespace citycard::reports::svg {

namespace {
const char* kPalette[] = {"#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2"};

// A "nice" tick step so that about `target` ticks cover [0, max].
double nice_step(double max, int target) {
  if (max <= 0) return 1;
  const double raw = max / target;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double f = raw / mag;
  const double nice = f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10;
  return nice * mag;
}

std::string num(double v) {
  char b[32];
  if (std::fabs(v) >= 1e6) {
    std::snprintf(b, sizeof b, "%.3gM", v / 1e6);
  } else if (std::fabs(v) >= 1e4) {
    std::snprintf(b, sizeof b, "%.3gk", v / 1e3);
  } else {
    std::snprintf(b, sizeof b, "%.4g", v);
  }
  return b;
}

struct Frame {
  int w, h, left = 64, right = 16, top = 36, bottom = 48;
  double x0, x1, y1;
  double px(double x) const {
    return left + (x1 > x0 ? (x - x0) / (x1 - x0) : 0) * (w - left - right);
  }
  double py(double y) const { return top + (1 - (y1 > 0 ? y / y1 : 0)) * (h - top - bottom); }
};

void axes_and_grid(std::ostringstream& o, const Frame& f, const Axes& a, bool x_ticks) {
  o << "<text x='" << f.w / 2 << "' y='20' text-anchor='middle' class='title'>" << escape(a.title)
    << "</text>";
  const double ystep = nice_step(f.y1, 5);
  for (double y = 0; y <= f.y1 + 1e-9; y += ystep) {
    o << "<line x1='" << f.left << "' x2='" << f.w - f.right << "' y1='" << f.py(y) << "' y2='"
      << f.py(y) << "' class='grid'/>";
    o << "<text x='" << f.left - 6 << "' y='" << f.py(y) + 4 << "' text-anchor='end' class='tick'>"
      << num(y) << "</text>";
  }
  if (x_ticks) {
    const double xstep = nice_step(f.x1 - f.x0, 8);
    for (double x = std::ceil(f.x0 / xstep) * xstep; x <= f.x1 + 1e-9; x += xstep) {
      o << "<text x='" << f.px(x) << "' y='" << f.h - f.bottom + 16
        << "' text-anchor='middle' class='tick'>" << num(x) << "</text>";
    }
  }
  o << "<line x1='" << f.left << "' x2='" << f.w - f.right << "' y1='" << f.py(0) << "' y2='"
    << f.py(0) << "' class='axis'/>";
  o << "<line x1='" << f.left << "' x2='" << f.left << "' y1='" << f.top << "' y2='" << f.py(0)
    << "' class='axis'/>";
  o << "<text x='" << (f.left + f.w - f.right) / 2 << "' y='" << f.h - 8
    << "' text-anchor='middle' class='label'>" << escape(a.x_label) << "</text>";
  o << "<text transform='translate(14," << (f.top + f.h - f.bottom) / 2
    << ") rotate(-90)' text-anchor='middle' class='label'>" << escape(a.y_label) << "</text>";
}
}  // namespace

std::string escape(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string thousands(long long v) {
  std::string digits = std::to_string(v < 0 ? -v : v);
  std::string out;
  int n = 0;
  for (auto it = digits.rbegin(); it != digits.rend(); ++it) {
    if (n && n % 3 == 0) out.push_back(',');
    out.push_back(*it);
    ++n;
  }
  if (v < 0) out.push_back('-');
  return std::string(out.rbegin(), out.rend());
}

std::string yuan(long long fen) {
  const long long a = fen < 0 ? -fen : fen;
  char cents[4];
  std::snprintf(cents, sizeof cents, "%02lld", a % 100);
  return (fen < 0 ? "-" : "") + thousands(a / 100) + "." + cents;
}

std::string line_chart(const Axes& a, const std::vector<Series>& series, int width, int height) {
  Frame f{width, height};
  f.x0 = 1e300;
  f.x1 = -1e300;
  double ymax = 0;
  for (const auto& s : series) {
    for (const auto& [x, y] : s.points) {
      f.x0 = std::min(f.x0, x);
      f.x1 = std::max(f.x1, x);
      ymax = std::max(ymax, y);
    }
  }
  if (f.x0 > f.x1) f.x0 = f.x1 = 0;
  const double step = nice_step(ymax, 5);
  f.y1 = std::max(step, std::ceil(ymax / step) * step);
  std::ostringstream o;
  o << "<svg xmlns='http://www.w3.org/2000/svg' class='chart' width='" << width << "' height='"
    << height << "' viewBox='0 0 " << width << ' ' << height << "' role='img' aria-label='"
    << escape(a.title) << "'>";
  axes_and_grid(o, f, a, true);
  for (std::size_t i = 0; i < series.size(); ++i) {
    const char* color = kPalette[i % 6];
    o << "<polyline fill='none' stroke='" << color << "' stroke-width='2' points='";
    for (const auto& [x, y] : series[i].points) o << f.px(x) << ',' << f.py(y) << ' ';
    o << "'/>";
    if (series[i].points.size() <= 24) {
      // Few points (a sweep's steps): mark each one.
      for (const auto& [x, y] : series[i].points) {
        o << "<circle cx='" << f.px(x) << "' cy='" << f.py(y) << "' r='3' fill='" << color
          << "'><title>" << escape(series[i].name) << ": " << num(y) << " at " << num(x)
          << "</title></circle>";
      }
    }
    // Legend, top right.
    const int ly = f.top + 4 + static_cast<int>(i) * 16;
    o << "<rect x='" << width - f.right - 150 << "' y='" << ly << "' width='10' height='10' fill='"
      << color << "'/><text x='" << width - f.right - 135 << "' y='" << ly + 9 << "' class='tick'>"
      << escape(series[i].name) << "</text>";
  }
  o << "</svg>";
  return o.str();
}

std::string bar_chart(const Axes& a, const std::vector<std::pair<std::string, double>>& bars,
                      int width, int height) {
  Frame f{width, height};
  if (bars.size() > 12) {
    f.h = height += 40;
    f.bottom += 40;
  }
  f.x0 = 0;
  f.x1 = static_cast<double>(bars.size());
  double ymax = 0;
  for (const auto& b : bars) ymax = std::max(ymax, b.second);
  const double step = nice_step(ymax, 5);
  f.y1 = std::max(step, std::ceil(ymax / step) * step);
  std::ostringstream o;
  o << "<svg xmlns='http://www.w3.org/2000/svg' class='chart' width='" << width << "' height='"
    << height << "' viewBox='0 0 " << width << ' ' << height << "' role='img' aria-label='"
    << escape(a.title) << "'>";
  axes_and_grid(o, f, a, false);
  const double slot = bars.empty() ? 0 : (f.px(f.x1) - f.px(0)) / static_cast<double>(bars.size());
  for (std::size_t i = 0; i < bars.size(); ++i) {
    const double x = f.px(static_cast<double>(i)) + slot * 0.15;
    const double y = f.py(bars[i].second);
    o << "<rect x='" << x << "' y='" << y << "' width='" << slot * 0.7 << "' height='"
      << f.py(0) - y << "' fill='" << kPalette[0] << "'><title>" << escape(bars[i].first) << ": "
      << num(bars[i].second) << "</title></rect>";
    if (bars.size() <= 12) {
      o << "<text x='" << x + slot * 0.35 << "' y='" << f.py(0) + 14
        << "' text-anchor='middle' class='tick'>" << escape(bars[i].first) << "</text>";
    } else if (bars.size() <= 60) {
      // Many bars: labels turned to read upwards, so neighbours do not collide.
      const double lx = x + slot * 0.35, ly = f.py(0) + 6;
      o << "<text x='" << lx << "' y='" << ly << "' transform='rotate(-60 " << lx << ' ' << ly
        << ")' text-anchor='end' class='tick'>" << escape(bars[i].first) << "</text>";
    }
  }
  // Legend: what a bar is.
  o << "<rect x='" << width - f.right - 150 << "' y='" << f.top + 4
    << "' width='10' height='10' fill='" << kPalette[0] << "'/><text x='" << width - f.right - 135
    << "' y='" << f.top + 13 << "' class='tick'>" << escape(a.y_label) << "</text>";
  o << "</svg>";
  return o.str();
}

std::string histogram(const Axes& a, const std::vector<Bin>& bins, int width, int height) {
  Frame f{width, height};
  f.x0 = 0;
  f.x1 = static_cast<double>(bins.size());
  double ymax = 0, total = 0;
  for (const auto& b : bins) {
    ymax = std::max(ymax, b.count);
    total += b.count;
  }
  const double step = nice_step(ymax, 5);
  f.y1 = std::max(step, std::ceil(ymax / step) * step);
  std::ostringstream o;
  o << "<svg xmlns='http://www.w3.org/2000/svg' class='chart' width='" << width << "' height='"
    << height << "' viewBox='0 0 " << width << ' ' << height << "' role='img' aria-label='"
    << escape(a.title) << "'>";
  axes_and_grid(o, f, a, false);
  const double slot = bins.empty() ? 0 : (f.px(f.x1) - f.px(0)) / static_cast<double>(bins.size());
  // Label every edge when they fit, else every other one.
  const std::size_t label_every = bins.size() <= 16 ? 1 : 2;
  for (std::size_t i = 0; i < bins.size(); ++i) {
    const double x = f.px(static_cast<double>(i));
    const double y = f.py(bins[i].count);
    char share[32];
    std::snprintf(share, sizeof share, "%.2f%%", total > 0 ? 100.0 * bins[i].count / total : 0.0);
    o << "<rect x='" << x + 0.5 << "' y='" << y << "' width='" << std::max(slot - 1, 0.5)
      << "' height='" << f.py(0) - y << "' fill='" << kPalette[0] << "'><title>"
      << num(bins[i].from) << " to " << num(bins[i].to) << ": " << num(bins[i].count) << " ("
      << share << ")</title></rect>";
    if (i % label_every == 0) {
      o << "<text x='" << x << "' y='" << f.py(0) + 14 << "' text-anchor='middle' class='tick'>"
        << num(bins[i].from) << "</text>";
    }
  }
  if (!bins.empty()) {
    o << "<text x='" << f.px(f.x1) << "' y='" << f.py(0) + 14
      << "' text-anchor='middle' class='tick'>" << num(bins.back().to) << "</text>";
  }
  // Legend: what a bar is.
  o << "<rect x='" << width - f.right - 150 << "' y='" << f.top + 4
    << "' width='10' height='10' fill='" << kPalette[0] << "'/><text x='" << width - f.right - 135
    << "' y='" << f.top + 13 << "' class='tick'>" << escape(a.y_label) << "</text>";
  o << "</svg>";
  return o.str();
}

}  // namespace citycard::reports::svg
