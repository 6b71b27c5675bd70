// SPDX-License-Identifier: GPL-2.0-only
/*
 * Scheduling of urgent and background threads (see thread_nice.h): each
 * call changes the calling thread only.  What an urgent thread could not
 * have is said once per process, not once per thread: a migration starts
 * several of them, and the reason is the same for all.
 */
#include <errno.h>
#include <sched.h>
#include <stdbool.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "log.h"
#include "thread_nice.h"

static int urgent_limit = KVMMIG_URGENCY_RT;	/* atomic */
static bool urgent_said;			/* atomic */

void kvmmig_thread_urgent_limit(enum kvmmig_urgency max)
{
	__atomic_store_n(&urgent_limit, max, __ATOMIC_RELAXED);
}

static int thread_nice(int nice)
{
	return setpriority(PRIO_PROCESS, gettid(), nice) ? -errno : 0;
}

enum kvmmig_urgency kvmmig_thread_urgent(const char *who)
{
	enum kvmmig_urgency max = __atomic_load_n(&urgent_limit, __ATOMIC_RELAXED);
	struct sched_param sp = { .sched_priority = KVMMIG_URGENT_RT_PRIO };
	int rt_err, nice_err;

	if (max == KVMMIG_URGENCY_NONE)
		return KVMMIG_URGENCY_NONE;
	if (max == KVMMIG_URGENCY_NICE)
		return thread_nice(KVMMIG_URGENT_NICE) ? KVMMIG_URGENCY_NONE : KVMMIG_URGENCY_NICE;
	if (!sched_setscheduler(gettid(), SCHED_FIFO | SCHED_RESET_ON_FORK, &sp))
		return KVMMIG_URGENCY_RT;
	rt_err = errno;
	nice_err = -thread_nice(KVMMIG_URGENT_NICE);
	if (!__atomic_exchange_n(&urgent_said, true, __ATOMIC_RELAXED)) {
		if (!nice_err)
			kvmmig_info("%s runs at nice %d, not real-time (%s): a vCPU waiting on it may wait for a scheduler tick",
				    who, KVMMIG_URGENT_NICE, strerror(rt_err));
		else
			kvmmig_info("%s keeps its priority (neither real-time nor nice %d: %s): a vCPU waiting on it may wait for a scheduler tick",
				    who, KVMMIG_URGENT_NICE, strerror(nice_err));
	}
	return nice_err ? KVMMIG_URGENCY_NONE : KVMMIG_URGENCY_NICE;
}

void kvmmig_thread_background(const char *who)
{
	int err = -thread_nice(KVMMIG_BACKGROUND_NICE);

	if (err)
		kvmmig_info("%s keeps its priority (nice %d not set): %s", who,
			    KVMMIG_BACKGROUND_NICE, strerror(err));
}

unsigned int kvmmig_thread_cpus(void)
{
	cpu_set_t set;

	if (sched_getaffinity(0, sizeof(set), &set))
		return 1;
	return CPU_COUNT(&set);
}
