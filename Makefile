# tollgate build. `make` builds build/tollgate; `make test` runs every check a change must pass;
# `make test SAN=1` does the same with AddressSanitizer and UndefinedBehaviorSanitizer.

CC       ?= gcc
PYTHON   := /usr/bin/python3
SAN      ?= 0
BUILD    ?= build$(if $(filter 1,$(SAN)),/san,)

WARN     := -Wall -Wextra -Wundef -Wstrict-prototypes -Wmissing-prototypes -Wshadow \
            -Wnull-dereference -Wno-unused-parameter
ifeq ($(findstring gcc,$(shell $(CC) --version 2>/dev/null | head -1 | tr A-Z a-z)),gcc)
WARN     += -Wduplicated-cond
endif
CFLAGS   ?= -O2 -g
CFLAGS   += -std=c17 -D_GNU_SOURCE -pthread $(WARN) -Isrc -I/usr/include/postgresql -MMD -MP
ifeq ($(CI),true)
CFLAGS   += -Werror
endif
ifeq ($(SAN),1)
CFLAGS   += -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -O1
LDFLAGS  += -fsanitize=address,undefined
endif
LDLIBS   += -lssl -lcrypto -lcares -lyaml -lhiredis -lsqlite3 -lpq -lpthread -lm

SRCS     := $(shell find src -name '*.c' | sort)
OBJS     := $(SRCS:%.c=$(BUILD)/%.o)
LIBOBJS  := $(filter-out $(BUILD)/src/main.o,$(OBJS))
UNIT     := $(patsubst tests/unit/%.c,$(BUILD)/tests/unit/%,$(wildcard tests/unit/test_*.c))
FUZZ     := $(patsubst tests/fuzz/%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
REPLAY   := $(FUZZ:%=$(BUILD)/tests/fuzz/%-replay)

.PHONY: all run test test-unit test-fuzz test-integration fuzz bench bench-mem format \
        format-check clean deps

all: $(BUILD)/tollgate

deps:
	@scripts/install-deps --build

$(BUILD)/tollgate: $(OBJS)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/tests/unit/%: tests/unit/%.c tests/unit/unit.h $(LIBOBJS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests/unit $(LDFLAGS) -o $@ $< $(LIBOBJS) $(LDLIBS)

# The cross-check compares our request parser with an independent one (Debian's http-parser).
$(BUILD)/tests/unit/test_h1_crosscheck: LDLIBS += -lhttp_parser

# Fuzz targets are replayed over their corpora by a plain driver, so `make test` needs no clang.
$(BUILD)/tests/fuzz/%-replay: tests/fuzz/%.c tests/fuzz/replay.c $(LIBOBJS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< tests/fuzz/replay.c $(LIBOBJS) $(LDLIBS)

run:
	@scripts/install-deps --build
	@$(MAKE) --no-print-directory all
	@scripts/run-quickstart $(BUILD)/tollgate

test:
	@scripts/install-deps
	@$(MAKE) --no-print-directory all $(UNIT) $(REPLAY)
	@SAN=$(SAN) BUILD=$(BUILD) PYTHON=$(PYTHON) scripts/run-tests

test-unit: $(UNIT)
	@SAN=$(SAN) BUILD=$(BUILD) PYTHON=$(PYTHON) scripts/run-tests unit

test-fuzz: $(REPLAY)
	@SAN=$(SAN) BUILD=$(BUILD) PYTHON=$(PYTHON) scripts/run-tests fuzz

test-integration: all
	@SAN=$(SAN) BUILD=$(BUILD) PYTHON=$(PYTHON) scripts/run-tests integration

# libFuzzer builds (clang), for finding new inputs: `make fuzz` then
# build/fuzz/fuzz_request -max_total_time=60 tests/fuzz/corpus/request
fuzz:
	@mkdir -p build/fuzz/obj
	@for f in $(FUZZ); do \
	    clang -std=c17 -D_GNU_SOURCE -g -O1 -Isrc -fsanitize=fuzzer,address,undefined \
	        -o build/fuzz/$$f tests/fuzz/$$f.c $(filter-out src/main.c,$(SRCS)) $(LDLIBS) \
	        || exit 1; \
	done

bench: all
	@scripts/install-deps
	@bench/run $(BUILD)/tollgate

bench-mem: all
	@scripts/install-deps
	@bench/mem $(BUILD)/tollgate

format:
	@clang-format -i $$(find src tests -name '*.[ch]')

format-check:
	@clang-format --dry-run -Werror $$(find src tests -name '*.[ch]')

clean:
	rm -rf build

-include $(OBJS:.o=.d)
