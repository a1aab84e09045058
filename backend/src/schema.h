// The clearing centre's database schema, as an ordered list of migrations (store.h). Private
// to the backend; tests beside the code use it to build a Store for one component.
#pragma once

#include <span>

#include "citycard/backend/store.h"

namespace citycard::backend::schema {

std::span<const Migration> migrations();

}  // namespace citycard::backend::schema
