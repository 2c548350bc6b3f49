// `sluice reload` and `sluice check --diff-running`: ask a running sluice, through the admin
// address its configuration names, to read its configuration file again (POST /reload) or to
// say what reading it would change (POST /reload?dry_run=1).
#pragma once

#include <string>

namespace sluice::cli {

// `sluice reload -c FILE [--dry-run]`: 0 when the reload was applied or had nothing to change
// (and for a dry run, when the running file is valid); 1 when it failed or sluice could not
// be asked. What changed, warnings and errors are printed one per line.
int reload_main(const std::string& config_path, bool dry_run);

// `sluice upgrade -c FILE`: POST /upgrade; 0 once the new process serves, 1 when it failed
// (the running one keeps serving) or sluice could not be asked.
int upgrade_main(const std::string& config_path);

}  // namespace sluice::cli
