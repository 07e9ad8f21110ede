"""Reads `perf script` output of sys_enter/exit_{fsync,fdatasync} events
(see record.sh) and prints, per (thread name, call), the count and the
p50/p99/max latency, then each fdatasync over 20 ms with the fsyncs that
overlapped it in time."""
import sys,re,collections
ev=[]
for line in sys.stdin:
    m=re.match(r'\s*(\S+)\s+(\d+)\s+\[\d+\]\s+([\d.]+):\s+syscalls:sys_(enter|exit)_(fdatasync|fsync)',line)
    if m: ev.append((float(m.group(3)),m.group(1),int(m.group(2)),m.group(4),m.group(5)))
open_={}; spans=[]
for t,comm,tid,ph,sc in ev:
    if ph=='enter': open_[(tid,sc)]=(t,comm)
    elif (tid,sc) in open_:
        t0,c=open_.pop((tid,sc)); spans.append((t0,t,c,sc))
by=collections.defaultdict(list)
for s in spans: by[(s[2],s[3])].append(s[1]-s[0])
for k,v in by.items():
    v.sort(); n=len(v)
    print(k,n,'p50 %.2f p99 %.2f max %.1f ms'%(v[n//2]*1e3,v[int(n*.99)]*1e3,v[-1]*1e3))
long=[s for s in spans if s[3]=='fdatasync' and s[1]-s[0]>0.02]
fs=[s for s in spans if s[3]=='fsync']
for s in long[:15]:
    ov=[f for f in fs if f[0]<s[1] and f[1]>s[0]]
    print('long fdatasync %.1f ms by %s at %.3f; overlapping fsyncs: %s'%((s[1]-s[0])*1e3,s[2],s[0],[(f[2],round((f[1]-f[0])*1e3,1)) for f in ov]))
