/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Scheduling of the threads a waiting vCPU depends on.  On a host with
 * fewer cores than runnable threads, a thread that wakes to serve a vCPU
 * stopped on a missing page (a fault thread, postcopy's return path and
 * preempt channel) otherwise waits for a core behind bulk copiers and
 * running vCPUs, and in a kernel without preemption (PREEMPT_NONE, common
 * on servers) a vCPU thread busy in KVM_RUN keeps its core until the next
 * tick: milliseconds, when the page itself takes tens of microseconds.
 * So such a thread takes SCHED_FIFO at the lowest real-time priority when
 * the process may (CAP_SYS_NICE or RLIMIT_RTPRIO): a real-time wakeup
 * takes the core at the vCPU thread's next preemption point, which KVM
 * reaches at every guest entry.  They sleep between short jobs, so they
 * never hold a core for long, and the kernel's real-time throttling bounds
 * them anyway.  Without that permission they take nice -5, without that
 * they run on as they are (an info line says why, once).  Lowering is for
 * background work (a snapshot's walkers).  A thread changes only its own
 * scheduling, and only a thread that ends with its job, so the caller's
 * threads are never left changed; SCHED_RESET_ON_FORK keeps a child from
 * inheriting real time.
 */
#ifndef KVMMIG_THREAD_NICE_H
#define KVMMIG_THREAD_NICE_H

#define KVMMIG_BACKGROUND_NICE	10	/* below the guest's vCPUs and the fault path */
#define KVMMIG_URGENT_NICE	-5	/* above them: it runs only while a vCPU waits */
#define KVMMIG_URGENT_RT_PRIO	1	/* the lowest SCHED_FIFO priority */

/* What an urgent thread got, from the most urgent. */
enum kvmmig_urgency {
	KVMMIG_URGENCY_RT,	/* SCHED_FIFO, KVMMIG_URGENT_RT_PRIO */
	KVMMIG_URGENCY_NICE,	/* SCHED_OTHER at KVMMIG_URGENT_NICE */
	KVMMIG_URGENCY_NONE,	/* unchanged */
};

/*
 * The calling thread serves waiting vCPUs: it takes the most urgent
 * scheduling it may, up to the process's limit; @who names it in the info
 * line when it cannot have the most urgent.  Returns what it got.
 */
enum kvmmig_urgency kvmmig_thread_urgent(const char *who);

/*
 * At most @max for urgent threads of this process from now on (default
 * KVMMIG_URGENCY_RT): for a benchmark that measures what real time buys.
 */
void kvmmig_thread_urgent_limit(enum kvmmig_urgency max);

/* The calling thread does bulk work that waiting vCPUs should not queue behind. */
void kvmmig_thread_background(const char *who);

/* The CPUs the calling thread may run on. */
unsigned int kvmmig_thread_cpus(void);

#endif /* KVMMIG_THREAD_NICE_H */
