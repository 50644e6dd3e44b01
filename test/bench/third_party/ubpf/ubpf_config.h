/* ubpf_config.h for this build (upstream generates it from ubpf_config.h.inc). */
#pragma once

#define UBPF_HAS_ELF_H
