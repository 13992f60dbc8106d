import os
import pwd

state = os.environ["SVC_STATE"]
user = pwd.getpwuid(os.getuid()).pw_name
print(f"service {os.environ['SVC_VERSION']} as {user} (uid {os.getuid()}) in {os.getcwd()}")
with open(os.path.join(state, "seed")) as f:
    print(f"state dir {state}: {f.read().strip()}")
with open(os.path.join(state, "written"), "w") as f:  # the volume is writable for the user
    f.write("x")
print("python ok")
