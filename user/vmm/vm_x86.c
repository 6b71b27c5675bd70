// SPDX-License-Identifier: GPL-2.0-only
/*
 * x86 specifics of the built-in VMM: load this binary's own segments into
 * the guest at their link addresses (guest code is plain C in the same
 * binary, as KVM selftests do), build identity page tables with 2 MiB pages,
 * a GDT with a 64-bit code segment and a TSS, and put every vCPU in long
 * mode at its first instruction.  Also the vCPU state save/load used at
 * migration switchover.
 */
#include <errno.h>
#include <link.h>
#include <string.h>
#include <sys/ioctl.h>

#include "log.h"
#include "vm.h"
#include "vm_internal.h"

#define X86_CR0_PE	(1ULL << 0)
#define X86_CR0_MP	(1ULL << 1)
#define X86_CR0_ET	(1ULL << 4)
#define X86_CR0_NE	(1ULL << 5)
#define X86_CR0_WP	(1ULL << 16)
#define X86_CR0_AM	(1ULL << 18)
#define X86_CR0_PG	(1ULL << 31)
#define X86_CR4_PAE	(1ULL << 5)
#define X86_CR4_OSFXSR	(1ULL << 9)
#define X86_CR4_OSXMMEXCPT (1ULL << 10)
#define EFER_SCE	(1ULL << 0)
#define EFER_LME	(1ULL << 8)
#define EFER_LMA	(1ULL << 10)

#define PTE_P		(1ULL << 0)
#define PTE_RW		(1ULL << 1)
#define PTE_PS		(1ULL << 7)

#define GUEST_TSS_GPA	0x3000ULL

struct image_range {
	uint64_t end;
	struct vm *vm;
	int err;
};

static int image_end_cb(struct dl_phdr_info *info, size_t size, void *data)
{
	struct image_range *r = data;
	int i;

	/* The first object is the executable itself: non-PIE, at dlpi_addr 0. */
	for (i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];

		if (ph->p_type == PT_LOAD && ph->p_vaddr + ph->p_memsz > r->end)
			r->end = info->dlpi_addr + ph->p_vaddr + ph->p_memsz;
	}
	return 1;
}

uint64_t vm_image_end(void)
{
	struct image_range r = { 0 };

	dl_iterate_phdr(image_end_cb, &r);
	return r.end;
}

static int load_image_cb(struct dl_phdr_info *info, size_t size, void *data)
{
	struct image_range *r = data;
	int i;

	if (info->dlpi_addr) {
		kvmmig_err("this binary is position-independent (loaded at 0x%lx); guest code needs a -no-pie build",
			   (unsigned long)info->dlpi_addr);
		r->err = -ENOEXEC;
		return 1;
	}
	for (i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		void *dst;

		if (ph->p_type != PT_LOAD)
			continue;
		dst = vm_gpa_to_hva(r->vm, ph->p_vaddr, ph->p_memsz);
		if (!dst) {
			kvmmig_err("binary segment at 0x%lx+0x%lx is outside the system slot",
				   (unsigned long)ph->p_vaddr, (unsigned long)ph->p_memsz);
			r->err = -ENOSPC;
			return 1;
		}
		/* Copy from our own mapping: .data as it is now, .bss included. */
		memcpy(dst, (void *)ph->p_vaddr, ph->p_memsz);
	}
	return 1;
}

int vm_load_image(struct vm *vm)
{
	struct image_range r = { .vm = vm };

	dl_iterate_phdr(load_image_cb, &r);
	return r.err;
}

uint64_t vm_vcpu_area_gpa(struct vm *vm, unsigned int id)
{
	return ALIGN_UP(vm_image_end(), 2ULL << 20) + id * GUEST_VCPU_AREA_SIZE;
}

static void gdt_set_tss(uint64_t *gdt, unsigned int idx, uint64_t base, uint32_t limit)
{
	/* A 16-byte available 64-bit TSS descriptor (type 9, present). */
	gdt[idx] = (limit & 0xffff) | ((base & 0xffffff) << 16) | (0x89ULL << 40) |
		   ((uint64_t)(limit >> 16 & 0xf) << 48) | ((base >> 24 & 0xff) << 56);
	gdt[idx + 1] = base >> 32;
}

int vm_x86_setup_memory(struct vm *vm)
{
	uint64_t top = GUEST_RAM_GPA + vm->cfg.ram_bytes;
	uint64_t nr_pd = ALIGN_UP(top, 1ULL << 30) >> 30;
	uint64_t *pml4, *pdpt, *pd, *gdt;
	uint64_t i;

	if (GUEST_PT_GPA + (2 + nr_pd) * GUEST_PAGE_SIZE > GUEST_PT_END) {
		kvmmig_err("guest RAM too large for the page-table area: %llu GiB mapped at most",
			   (unsigned long long)((GUEST_PT_END - GUEST_PT_GPA) / GUEST_PAGE_SIZE - 2));
		return -E2BIG;
	}
	pml4 = vm_gpa_to_hva(vm, GUEST_PT_GPA, GUEST_PAGE_SIZE);
	pdpt = vm_gpa_to_hva(vm, GUEST_PT_GPA + GUEST_PAGE_SIZE, GUEST_PAGE_SIZE);
	pd = vm_gpa_to_hva(vm, GUEST_PT_GPA + 2 * GUEST_PAGE_SIZE, nr_pd * GUEST_PAGE_SIZE);
	pml4[0] = (GUEST_PT_GPA + GUEST_PAGE_SIZE) | PTE_P | PTE_RW;
	for (i = 0; i < nr_pd; i++)
		pdpt[i] = (GUEST_PT_GPA + (2 + i) * GUEST_PAGE_SIZE) | PTE_P | PTE_RW;
	for (i = 0; i < nr_pd * 512; i++)
		pd[i] = (i << 21) | PTE_P | PTE_RW | PTE_PS;

	gdt = vm_gpa_to_hva(vm, GUEST_GDT_GPA, GUEST_PAGE_SIZE);
	gdt[0] = 0;
	gdt[GUEST_CODE_SEL >> 3] = 0x00af9b000000ffffULL;	/* 64-bit code */
	gdt[GUEST_DATA_SEL >> 3] = 0x00cf93000000ffffULL;	/* data */
	gdt_set_tss(gdt, 3, GUEST_TSS_GPA, 0x67);
	return 0;
}

static void seg_flat(struct kvm_segment *s, uint16_t sel, uint8_t type, bool code)
{
	memset(s, 0, sizeof(*s));
	s->base = 0;
	s->limit = 0xffffffff;
	s->selector = sel;
	s->type = type;
	s->present = 1;
	s->s = 1;
	s->g = 1;
	s->l = code;
	s->db = !code;
}

static int vcpu_set_cpuid(struct vcpu *vcpu)
{
	struct {
		struct kvm_cpuid2 c;
		struct kvm_cpuid_entry2 e[256];
	} cpuid = { .c.nent = 256 };

	if (ioctl(vcpu->vm->kvm_fd, KVM_GET_SUPPORTED_CPUID, &cpuid) < 0)
		return kvmmig_ioctl_err("KVM_GET_SUPPORTED_CPUID", errno);
	/* KVM refuses EFER.LME unless the guest's CPUID has long mode. */
	if (ioctl(vcpu->fd, KVM_SET_CPUID2, &cpuid) < 0)
		return kvmmig_ioctl_err("KVM_SET_CPUID2", errno);
	return 0;
}

int vcpu_x86_setup(struct vcpu *vcpu)
{
	struct vm *vm = vcpu->vm;
	uint64_t area = vm_vcpu_area_gpa(vm, vcpu->id);
	struct kvm_sregs sregs;
	struct kvm_regs regs;
	int ret;

	ret = vcpu_set_cpuid(vcpu);
	if (ret)
		return ret;
	if (ioctl(vcpu->fd, KVM_GET_SREGS, &sregs) < 0)
		return kvmmig_ioctl_err("KVM_GET_SREGS", errno);
	sregs.cr0 = X86_CR0_PE | X86_CR0_MP | X86_CR0_ET | X86_CR0_NE |
		    X86_CR0_WP | X86_CR0_AM | X86_CR0_PG;
	sregs.cr4 = X86_CR4_PAE | X86_CR4_OSFXSR | X86_CR4_OSXMMEXCPT;
	sregs.efer = EFER_LME | EFER_LMA | EFER_SCE;
	sregs.cr3 = GUEST_PT_GPA;
	seg_flat(&sregs.cs, GUEST_CODE_SEL, 11, true);
	seg_flat(&sregs.ds, GUEST_DATA_SEL, 3, false);
	sregs.es = sregs.fs = sregs.gs = sregs.ss = sregs.ds;
	memset(&sregs.tr, 0, sizeof(sregs.tr));
	sregs.tr.base = GUEST_TSS_GPA;
	sregs.tr.limit = 0x67;
	sregs.tr.selector = 3 << 3;
	sregs.tr.type = 11;	/* busy 64-bit TSS */
	sregs.tr.present = 1;
	memset(&sregs.ldt, 0, sizeof(sregs.ldt));
	sregs.ldt.unusable = 1;
	sregs.gdt.base = GUEST_GDT_GPA;
	sregs.gdt.limit = 5 * 8 - 1;
	sregs.idt.base = 0;
	sregs.idt.limit = 0;
	if (ioctl(vcpu->fd, KVM_SET_SREGS, &sregs) < 0)
		return kvmmig_ioctl_err("KVM_SET_SREGS", errno);

	memset(&regs, 0, sizeof(regs));
	regs.rflags = 0x2;
	regs.rip = vm->entry_rip;
	/* As if called: the stack top minus a return address slot. */
	regs.rsp = area + GUEST_VCPU_AREA_SIZE - 8;
	regs.rdi = vcpu->id;
	regs.rsi = area;
	if (ioctl(vcpu->fd, KVM_SET_REGS, &regs) < 0)
		return kvmmig_ioctl_err("KVM_SET_REGS", errno);
	return 0;
}

/* The MSRs a migrated vCPU needs; ones KVM does not know are dropped. */
static const uint32_t vcpu_msrs[] = {
	0x00000010,	/* IA32_TSC */
	0x00000174,	/* SYSENTER_CS */
	0x00000175,	/* SYSENTER_ESP */
	0x00000176,	/* SYSENTER_EIP */
	0xc0000081,	/* STAR */
	0xc0000082,	/* LSTAR */
	0xc0000083,	/* CSTAR */
	0xc0000084,	/* FMASK */
	0xc0000102,	/* KERNEL_GS_BASE */
	0x000001a0,	/* MISC_ENABLE */
	0x00000277,	/* PAT */
};

int vcpu_save_state(struct vcpu *vcpu, struct vcpu_state_blob *st)
{
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry e[16];
	} msrs = { 0 };
	unsigned int i;
	int n;

	memset(st, 0, sizeof(*st));
	if (ioctl(vcpu->fd, KVM_GET_REGS, &st->regs) < 0)
		return kvmmig_ioctl_err("KVM_GET_REGS", errno);
	if (ioctl(vcpu->fd, KVM_GET_SREGS, &st->sregs) < 0)
		return kvmmig_ioctl_err("KVM_GET_SREGS", errno);
	if (ioctl(vcpu->fd, KVM_GET_FPU, &st->fpu) < 0)
		return kvmmig_ioctl_err("KVM_GET_FPU", errno);
	if (ioctl(vcpu->fd, KVM_GET_XSAVE, &st->xsave) < 0)
		return kvmmig_ioctl_err("KVM_GET_XSAVE", errno);
	if (ioctl(vcpu->fd, KVM_GET_XCRS, &st->xcrs) < 0)
		return kvmmig_ioctl_err("KVM_GET_XCRS", errno);
	if (ioctl(vcpu->fd, KVM_GET_VCPU_EVENTS, &st->events) < 0)
		return kvmmig_ioctl_err("KVM_GET_VCPU_EVENTS", errno);
	for (i = 0; i < sizeof(vcpu_msrs) / sizeof(vcpu_msrs[0]); i++)
		msrs.e[i].index = vcpu_msrs[i];
	msrs.hdr.nmsrs = i;
	/* KVM_GET_MSRS stops at the first MSR it does not know. */
	n = ioctl(vcpu->fd, KVM_GET_MSRS, &msrs);
	if (n < 0)
		return kvmmig_ioctl_err("KVM_GET_MSRS", errno);
	st->nr_msrs = n;
	memcpy(st->msrs, msrs.e, n * sizeof(msrs.e[0]));
	return 0;
}

int vcpu_load_state(struct vcpu *vcpu, const struct vcpu_state_blob *st)
{
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry e[16];
	} msrs = { 0 };

	if (st->nr_msrs > 16) {
		kvmmig_err("vCPU state has %u MSRs, at most 16 expected", st->nr_msrs);
		return -EINVAL;
	}
	/* sregs first: KVM checks the other state against the mode. */
	if (ioctl(vcpu->fd, KVM_SET_SREGS, &st->sregs) < 0)
		return kvmmig_ioctl_err("KVM_SET_SREGS", errno);
	if (ioctl(vcpu->fd, KVM_SET_XCRS, &st->xcrs) < 0)
		return kvmmig_ioctl_err("KVM_SET_XCRS", errno);
	if (ioctl(vcpu->fd, KVM_SET_XSAVE, &st->xsave) < 0)
		return kvmmig_ioctl_err("KVM_SET_XSAVE", errno);
	if (ioctl(vcpu->fd, KVM_SET_FPU, &st->fpu) < 0)
		return kvmmig_ioctl_err("KVM_SET_FPU", errno);
	if (ioctl(vcpu->fd, KVM_SET_REGS, &st->regs) < 0)
		return kvmmig_ioctl_err("KVM_SET_REGS", errno);
	msrs.hdr.nmsrs = st->nr_msrs;
	memcpy(msrs.e, st->msrs, st->nr_msrs * sizeof(msrs.e[0]));
	if (ioctl(vcpu->fd, KVM_SET_MSRS, &msrs) != (int)st->nr_msrs)
		return kvmmig_ioctl_err("KVM_SET_MSRS", errno ? errno : EINVAL);
	if (ioctl(vcpu->fd, KVM_SET_VCPU_EVENTS, &st->events) < 0)
		return kvmmig_ioctl_err("KVM_SET_VCPU_EVENTS", errno);
	return 0;
}
