// Programmer errors stop the program, in every build type (assert() vanishes under NDEBUG,
// which RelWithDebInfo and Release set).
#pragma once

#include <cstdio>
#include <cstdlib>

#define CITYCARD_CHECK(cond, what)                                                    \
  do {                                                                                \
    if (!(cond)) [[unlikely]] {                                                       \
      std::fprintf(stderr, "%s:%d: check failed: %s (%s)\n", __FILE__, __LINE__, #cond, \
                   what);                                                             \
      std::abort();                                                                   \
    }                                                                                 \
  } while (0)
