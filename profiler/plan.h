/* Study plans on a Slurm cluster (docs/studies.md, "Slurm"): submitting every phase of a plan
 * with its dependencies, and the study's progress from its run directories and the queue. */
#ifndef DEBA_PROFILER_PLAN_H
#define DEBA_PROFILER_PLAN_H

#include <stdio.h>
#include "profiler/profile.h"

/* Writes the study's files into dir (default <out>/slurm when NULL: jobs.txt and the phase
 * scripts, as deba_plan_emit, and logs/), then runs sbatch once per phase: the runs that need
 * nothing, the calibration, the calibrated runs, the report, each after the one before
 * (afterany: every later phase checks that the runs it needs completed). The job ids go to
 * dir/submitted.csv and log. An earlier submission of this study still in the queue is
 * DEBA_E_INPUT (nothing submitted); a failing sbatch is DEBA_E_RUNTIME naming the jobs it left. */
deba_status deba_plan_submit(const deba_plan *p, const char *dir, FILE *log, deba_err *e);

/* The study's progress: runs done, running, failed and to do, epochs done, an ETA, the failed
 * runs with their log, and the state of the submitted jobs (squeue, and sacct when it works).
 * dir as for deba_plan_submit. *finished: no job of the submission is pending or running (or,
 * without one, no run is running); *all_done: every run completed. */
deba_status deba_plan_status(const deba_plan *p, const char *dir, FILE *out, int *finished, int *all_done,
                             deba_err *e);

#endif
