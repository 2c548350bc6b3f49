// The files of the admin dashboard (its page, script, styles and charting library), embedded
// in the binary at build time by src/admin/embed_assets.cmake.
#pragma once

#include <span>
#include <string_view>

namespace sluice::admin {

struct DashboardAsset {
  std::string_view url;  // "/" for the page, "/dashboard/NAME" for the others
  std::string_view content_type;
  std::string_view body;
};

std::span<const DashboardAsset> dashboard_assets();

}  // namespace sluice::admin
