/* The record bashreadline's program sends for each line (ring buffer in
 * samples/bashreadline, perf buffer in samples/skel), shared by the BPF
 * side and the skeleton loader; bashreadline.py unpacks the same layout. */
#ifndef BASHREADLINE_LINE_EVENT_H
#define BASHREADLINE_LINE_EVENT_H

#define MAX_LINE 80

struct line_event {
    unsigned int pid;
    char comm[16];
    char line[MAX_LINE];
};

#endif
