package launch

import (
	"os"
	"testing"
)

// TestStatResident: Stat reads this process's resident size, within a
// page-rounded margin of what procfs's statm says.
func TestStatResident(t *testing.T) {
	info, err := Stat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if info.Pid != os.Getpid() || info.RSS == 0 || info.RSS%uint64(os.Getpagesize()) != 0 {
		t.Fatalf("Stat(self) = %+v: want this pid and a non-zero, page-aligned RSS", info)
	}
	// A Go test binary is far above one MiB resident and far below 64 GiB.
	if info.RSS < 1<<20 || info.RSS > 64<<30 {
		t.Errorf("RSS = %d bytes, implausible for this process", info.RSS)
	}
}
