// One visitor from several lambdas, for std::visit over a variant:
//   std::visit(core::Overloaded{[](const A&) {…}, [](const B&) {…}}, v);
#pragma once

namespace kpay::core {

template <class... F>
struct Overloaded : F... {
  using F::operator()...;
};
template <class... F>
Overloaded(F...) -> Overloaded<F...>;

}  // namespace kpay::core
