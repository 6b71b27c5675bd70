/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Building a struct mig_report's timeline (user/lib/mig_report.c).  The
 * migration thread appends one struct mig_sample per sync and per progress
 * tick; the outputs (CSV, SVG, text, JSON) are declared in migrate.h.
 */
#ifndef KVMMIG_MIG_REPORT_H
#define KVMMIG_MIG_REPORT_H

#include "migrate.h"

/*
 * Append a copy of @s to r->samples, growing the array geometrically.
 * Returns 0, -ENOMEM, or -E2BIG once nr_samples would overflow.
 */
int mig_report_add_sample(struct mig_report *r, const struct mig_sample *s);

#endif /* KVMMIG_MIG_REPORT_H */
