// SPDX-License-Identifier: GPL-2.0-only
/* placeholder, replaced below */
#include "commands.h"
int cmd_demo(int argc, char **argv) { return 0; }
int cmd_run(int argc, char **argv) { return 0; }
