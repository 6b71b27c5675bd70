/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Thread priorities for the threads a waiting vCPU depends on.  On a host
 * with fewer cores than runnable threads, a thread that wakes to serve a
 * vCPU stopped on a missing page (a fault thread, postcopy's return path
 * and preempt channel) otherwise queues behind bulk copiers and running
 * vCPUs for a scheduler slice, milliseconds at a time, when the page itself
 * takes tens of microseconds.  Raising needs CAP_SYS_NICE (or RLIMIT_NICE):
 * without it the thread runs on at its priority (an info line says why).  Lowering
 * is for background work (a snapshot's walkers).  A thread changes only its
 * own priority, and only a thread that ends with its job, so the caller's
 * threads are never left changed.
 */
#ifndef KVMMIG_THREAD_NICE_H
#define KVMMIG_THREAD_NICE_H

#include <errno.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "log.h"

#define KVMMIG_BACKGROUND_NICE	10	/* below the guest's vCPUs and the fault path */
#define KVMMIG_URGENT_NICE	-5	/* above them: it runs only while a vCPU waits */

static inline void kvmmig_thread_nice(int nice, const char *who)
{
	if (setpriority(PRIO_PROCESS, gettid(), nice))
		kvmmig_info("%s keeps its priority (nice %d not set): %s", who, nice,
			    strerror(errno));
}

/* The calling thread serves waiting vCPUs; @who names it if it cannot be raised. */
static inline void kvmmig_thread_urgent(const char *who)
{
	kvmmig_thread_nice(KVMMIG_URGENT_NICE, who);
}

/* The calling thread does bulk work that waiting vCPUs should not queue behind. */
static inline void kvmmig_thread_background(const char *who)
{
	kvmmig_thread_nice(KVMMIG_BACKGROUND_NICE, who);
}

#endif /* KVMMIG_THREAD_NICE_H */
