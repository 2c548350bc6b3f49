// `sluice probe ...`: the command line of the probe (arguments, output, exit status).
// Called from main() on the main thread; runs its own event loop and returns.
#pragma once

namespace sluice::probe {

extern const char kUsage[];

// argv holds the arguments after "probe". Returns the exit status (see kUsage).
int probe_main(int argc, char** argv);

}  // namespace sluice::probe
