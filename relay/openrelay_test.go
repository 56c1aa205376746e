package relay

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/relaymail/relay/config"
)

// The no-open-relay property: whatever the configuration (networks,
// users with or without allowed_senders, routes, default_profile) and
// whatever the client (address, logged in or not, sender), relay accepts
// mail only for the one profile an independent reading of SPEC.md
// entitles the client to, and refuses it otherwise: 530 5.7.0 to an
// untrusted client that did not log in, else 550 5.7.1.

// Pools the generator draws from. Patterns and senders are chosen so that
// they often almost match: case, subdomains, a domain as a prefix of
// another, the null sender.
var (
	genNetworks = []string{"127.0.0.0/8", "::1/128", "10.0.0.0/8", "192.168.1.0/24", "192.168.1.7", "2001:db8::/32", "0.0.0.0/0"}
	genPatterns = []string{"*", "*@plant.example.com", "alarms@plant.example.com", "ALARMS@Plant.Example.COM", "*@reports.example.com",
		"a*@*.example.com", "*.com", "*@*", "x@plant.example.com*", "*@example.com"}
	genSenders = []string{"alarms@plant.example.com", "x@plant.example.com", "ALARMS@PLANT.EXAMPLE.COM", "daily@reports.example.com",
		"evil@attacker.example", "", "a@b.example.com", "x@plant.example.com.attacker.example", "ceo@example.com", "alarms@plant.example.co"}
	genAddrs = []string{"127.0.0.1", "127.9.9.9", "::1", "10.1.2.3", "::ffff:10.1.2.3", "192.168.1.7", "192.168.1.8", "192.168.2.7",
		"2001:db8::5", "2001:db9::5", "203.0.113.9"}
)

type genUser struct {
	name, profile string
	allowed       []string
}

type genRoute struct{ sender, profile string }

type genConfig struct {
	networks []string
	profiles []string
	users    []genUser
	routes   []genRoute
	def      string
}

type genClient struct {
	addr   string
	user   string // "" not logged in
	sender string
}

func pick[T any](r *rand.Rand, pool []T) T { return pool[r.IntN(len(pool))] }

func subset[T any](r *rand.Rand, pool []T, max int) []T {
	n := r.IntN(max + 1)
	out := make([]T, 0, n)
	for range n {
		out = append(out, pick(r, pool))
	}
	return out
}

func genConf(r *rand.Rand) genConfig {
	var g genConfig
	g.networks = subset(r, genNetworks, 3)
	for i := range 1 + r.IntN(4) {
		g.profiles = append(g.profiles, fmt.Sprintf("p%d", i))
	}
	for i := range r.IntN(4) {
		g.users = append(g.users, genUser{name: fmt.Sprintf("u%d", i), profile: pick(r, g.profiles), allowed: subset(r, genPatterns, 2)})
	}
	for range r.IntN(4) {
		g.routes = append(g.routes, genRoute{pick(r, genPatterns), pick(r, g.profiles)})
	}
	if r.IntN(2) == 0 {
		g.def = pick(r, g.profiles)
	}
	return g
}

func genCli(r *rand.Rand, g genConfig) genClient {
	c := genClient{addr: pick(r, genAddrs), sender: pick(r, genSenders)}
	if len(g.users) > 0 && r.IntN(2) == 0 {
		c.user = pick(r, g.users).name
	}
	return c
}

// toml renders the configuration; maildir is where profile NAME writes
// (NAME is replaced).
func (g genConfig) toml(pwHash, maildir string) string {
	q := func(ss []string) string {
		quoted := make([]string, len(ss))
		for i, s := range ss {
			quoted[i] = fmt.Sprintf("%q", s)
		}
		return "[" + strings.Join(quoted, ", ") + "]"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "[server]\nallow_unauthenticated = %s\ndefault_profile = %q\ndata_dir = %q\n", q(g.networks), g.def, strings.ReplaceAll(maildir, "NAME", "data"))
	for _, u := range g.users {
		fmt.Fprintf(&b, "\n[[users]]\nname = %q\npassword_hash = %q\nprofile = %q\nallowed_senders = %s\n", u.name, pwHash, u.profile, q(u.allowed))
	}
	for _, rt := range g.routes {
		fmt.Fprintf(&b, "\n[[routes]]\nsender = %q\nprofile = %q\n", rt.sender, rt.profile)
	}
	for _, p := range g.profiles {
		fmt.Fprintf(&b, "\n[[profiles]]\nname = %q\nkind = \"maildir\"\npath = %q\n", p, strings.ReplaceAll(maildir, "NAME", p))
	}
	return b.String()
}

// entitled is the oracle: SPEC.md's rules, written again from the
// configuration's text with the standard library's own parsers. It
// returns the profile the client may use, or "" and whether the refusal
// is for want of AUTH.
func (g genConfig) entitled(c genClient) (profile string, needAuth bool) {
	if c.user != "" {
		for _, u := range g.users {
			if u.name != c.user {
				continue
			}
			if len(u.allowed) > 0 && !globAny(u.allowed, c.sender) {
				return "", false
			}
			return u.profile, false
		}
		panic("client logged in as an unknown user")
	}
	if !inNetworks(g.networks, c.addr) {
		return "", true
	}
	for _, rt := range g.routes {
		if glob(rt.sender, c.sender) {
			return rt.profile, false
		}
	}
	return g.def, false
}

func glob(pattern, s string) bool {
	re := "(?is)^" + strings.ReplaceAll(regexp.QuoteMeta(pattern), `\*`, ".*") + "$"
	return regexp.MustCompile(re).MatchString(s)
}

func globAny(patterns []string, s string) bool {
	for _, p := range patterns {
		if glob(p, s) {
			return true
		}
	}
	return false
}

func inNetworks(networks []string, addr string) bool {
	ip := net.ParseIP(addr)
	for _, n := range networks {
		if !strings.Contains(n, "/") {
			if other := net.ParseIP(n); other != nil && other.Equal(ip) {
				return true
			}
			continue
		}
		if _, ipnet, err := net.ParseCIDR(n); err == nil && ipnet.Contains(ip) {
			return true
		}
	}
	return false
}

// TestNoOpenRelayPolicy checks the property for 3000 generated
// configurations and clients through Policy.Select.
func TestNoOpenRelayPolicy(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 25))
	pwHash := hash(t, "pw")
	accepted, refused := 0, 0
	for i := range 3000 {
		g := genConf(r)
		text := g.toml(pwHash, "/nonexistent/NAME")
		cfg, err := config.Parse("gen.toml", []byte(text))
		if err != nil {
			t.Fatalf("case %d: generated configuration: %v\n%s", i, err, text)
		}
		policy := NewPolicy(cfg)
		for range 4 {
			c := genCli(r, g)
			var user *config.User
			if c.user != "" {
				user = policy.User(c.user)
			}
			p, refusal := policy.Select(user, netip.MustParseAddr(c.addr), c.sender)
			want, needAuth := g.entitled(c)
			switch {
			case refusal == nil && (p == nil || p.Name != want):
				name := "<nil>"
				if p != nil {
					name = p.Name
				}
				t.Fatalf("case %d: client %+v was given profile %s; entitled to %q\n%s", i, c, name, want, text)
			case refusal != nil && want != "":
				t.Fatalf("case %d: client %+v refused (%v); entitled to %q\n%s", i, c, refusal, want, text)
			case refusal != nil && needAuth && (refusal.Code != 530 || refusal.EnhancedCode != [3]int{5, 7, 0}):
				t.Fatalf("case %d: client %+v refused with %v; want 530 5.7.0", i, c, refusal)
			case refusal != nil && !needAuth && (refusal.Code != 550 || refusal.EnhancedCode != [3]int{5, 7, 1}):
				t.Fatalf("case %d: client %+v refused with %v; want 550 5.7.1", i, c, refusal)
			}
			if refusal == nil {
				accepted++
			} else {
				refused++
			}
		}
	}
	// The generator must reach both outcomes often, or it proves little.
	if accepted < 2000 || refused < 2000 {
		t.Fatalf("%d accepted and %d refused: the generator is lopsided", accepted, refused)
	}
}

// TestNoOpenRelayServer checks the property through the real server for a
// sample: 15 configurations, 4 clients each, all from 127.0.0.1 (the only
// address a test may use), some logging in with the right password and
// some with a wrong one. Each profile is a Maildir, so where a message
// went is plain to see.
func TestNoOpenRelayServer(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 5))
	pwHash := hash(t, "pw")
	for i := range 15 {
		g := genConf(r)
		dir := t.TempDir()
		h := startHarness(t, g.toml(pwHash, filepath.Join(dir, "NAME")), Options{})
		count := func() map[string]int {
			n := map[string]int{}
			for _, p := range g.profiles {
				n[p] = len(maildirMessages(t, filepath.Join(dir, p)))
			}
			return n
		}
		for j := range 4 {
			c := genCli(r, g)
			c.addr = "127.0.0.1"
			wrongPassword := c.user != "" && r.IntN(3) == 0
			before := count()

			cl := dial(t, h.addr)
			cl.ehlo()
			if c.user != "" {
				pw := "pw"
				if wrongPassword {
					pw = "wrong"
				}
				code, last := cl.authPlain(c.user, pw)
				switch {
				case wrongPassword && code == 535:
					c.user = "" // carries on as a client that did not log in
				case !wrongPassword && code == 235:
				default:
					t.Fatalf("config %d client %d: AUTH %s → %q", i, j, c.user, last)
				}
			}
			want, needAuth := g.entitled(c)
			code, last := cl.cmd("MAIL FROM:<" + c.sender + ">")
			switch {
			case want == "" && needAuth && strings.HasPrefix(last, "530 5.7.0 "):
			case want == "" && !needAuth && strings.HasPrefix(last, "550 5.7.1 "):
			case want != "" && code == 250:
				cl.must("RCPT TO:<ops@example.com>", 250, "")
				if code, last := cl.data(msgBody); code != 250 {
					t.Fatalf("config %d client %+v: DATA → %q", i, c, last)
				}
			default:
				t.Fatalf("config %d client %+v: MAIL → %q; entitled to %q (auth needed: %v)", i, c, last, want, needAuth)
			}
			cl.cmd("QUIT")
			after := count()
			for _, p := range g.profiles {
				wantN := before[p]
				if p == want {
					wantN++
				}
				if after[p] != wantN {
					t.Fatalf("config %d client %+v: profile %s holds %d messages; want %d", i, c, p, after[p], wantN)
				}
			}
		}
	}
}
