// The git commit the binary was built from (short hash), or "" when built
// outside a git checkout. Defined in a generated source (core/build_commit.cmake)
// in the library kpay_build_commit, which only the programs link, so a new
// commit relinks them and nothing else.
#pragma once

namespace kpay::core {

const char* build_commit();

}  // namespace kpay::core
