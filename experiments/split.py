# Hold-out split for tuning: train = first 50,000 of the official training set,
# "t10k" = last 10,000 of the official training set. The official test set is not used.
import gzip, struct, sys, os
src, dst = sys.argv[1], sys.argv[2]
os.makedirs(dst, exist_ok=True)
im = gzip.open(os.path.join(src, 'train-images-idx3-ubyte.gz')).read()
lb = gzip.open(os.path.join(src, 'train-labels-idx1-ubyte.gz')).read()
n = struct.unpack('>I', im[4:8])[0]; assert n == 60000
px = im[16:]; lab = lb[8:]; S = 784
def w(prefix, a, b):
    k = b - a
    open(os.path.join(dst, prefix + '-images-idx3-ubyte'), 'wb').write(struct.pack('>IIII', 0x803, k, 28, 28) + px[a*S:b*S])
    open(os.path.join(dst, prefix + '-labels-idx1-ubyte'), 'wb').write(struct.pack('>II', 0x801, k) + lab[a:b])
w('train', 0, 50000); w('t10k', 50000, 60000)
